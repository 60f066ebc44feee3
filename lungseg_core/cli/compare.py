"""``lungseg compare BASELINE_DIR FOLLOWUP_DIR [-o OUT]``: change in lung volumes and infection burden."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lungseg_core.errors import OutputError

HELP = "Compare two result folders of the same patient: change in lung volumes and infection %, per zone."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", type=Path, help="result folder of the earlier scan (CASE.json files)")
    parser.add_argument("followup", type=Path, help="result folder of the later scan")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for compare.csv and compare.png (default: FOLLOWUP/compare)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing compare.csv/compare.png")


def run(args: argparse.Namespace) -> int:
    from lungseg_core.reports.compare import compare_folders

    out_dir = args.output if args.output is not None else Path(args.followup) / "compare"
    existing = [p for p in (out_dir / "compare.csv", out_dir / "compare.png") if p.exists()]
    if existing and not args.overwrite:
        raise OutputError(f"'{existing[0]}' already exists", "pass --overwrite or choose another -o folder")
    csv_path, png_path = compare_folders(args.baseline, args.followup, out_dir,
                                         lambda line: print(f"lungseg compare: note: {line}", file=sys.stderr))
    print(csv_path)
    print(png_path)
    return 0
