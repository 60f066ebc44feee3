"""``lungseg evaluate --pred DIR --ref DIR``: metrics of segmentation outputs against reference labels."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

HELP = "Compare 'lungseg segment' outputs with reference segmentations: Dice, IoU, HD95, ASD, NSD, volumes."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", type=Path, required=True, metavar="DIR",
                        help="folder of predictions (CASE_lungs.nii.gz, CASE_infection.nii.gz, CASE.seg.nrrd)")
    parser.add_argument("--ref", type=Path, required=True, metavar="DIR",
                        help="folder of references: CASE_lungs/CASE_infection labelmaps, CASE.seg.nrrd, "
                             "CASE.nii.gz/.nrrd labelmaps or 2D CASE.png masks, in lungseg's convention (lungs "
                             "1 = patient's right, 2 = left; infection 1 GGO, 2 consolidation). Binary masks "
                             "(any 0/255 mask, or a folder whose plain CASE.nii.gz/.png files all hold only 1) "
                             "are scored as 'Infection (any)' / 'Lungs (both)' only; a folder mixing 0/255 "
                             "masks and 1/2 labels is refused. Lung references numbering the left lung 1 (e.g. "
                             "COVID-19-CT-Seg, many nnU-Net sets) get a warning and only 'Lungs (both)': "
                             "recode them 1 = right, 2 = left to score each lung")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                        help="folder for metrics.csv, summary.json and boxplot.png (default: PRED/evaluation)")
    parser.add_argument("--task", choices=("lungs", "infection", "all"), default="all",
                        help="what to evaluate (default: all). References without a task in their name count "
                             "as this task; with 'all', volumes count as lungs and PNG masks as infection "
                             "(give 'lungs' for PNG lung masks)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-case progress and no table")


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary_table(metrics: dict) -> str:
    """Per task and label: cases, Dice mean +/- std, HD95 median, NSD@1mm mean, volume difference mean."""
    header = f"{'task':<10} {'label':<22} {'n':>3}  {'Dice':>13}  {'HD95 med':>9}  {'NSD@1mm':>7}  {'dVol mL':>8}"
    lines = [header, "-" * len(header)]
    for task, labels in metrics.items():
        for entry in labels.values():
            dice = entry["dice"]
            dice_text = f"{_cell(dice['mean'])} +/- {_cell(dice['std'])}" if dice["n"] else "-"
            lines.append(
                f"{task:<10} {entry['label_name'][:22]:<22} {entry['n_cases']:>3}  {dice_text:>13}  "
                f"{_cell(entry['hd95_mm']['median'], 2):>9}  {_cell(entry['nsd_1mm']['mean']):>7}  "
                f"{_cell(entry['volume_diff_ml']['mean'], 1):>8}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lungseg_core.evaluation import evaluate_folders

    result = evaluate_folders(args.pred, args.ref, args.output, task=args.task, progress=not args.quiet)
    summary = result.summary
    if not args.quiet:
        print(summary_table(summary["metrics"]))
        if summary.get("pixel_unit_cases"):
            print("note: 2D PNG references have no spacing; their HD95/ASD are in pixels")
        if summary.get("binary_reference_cases"):
            print(f"note: {len(summary['binary_reference_cases'])} binary reference(s) (region masks without "
                  "classes or sides) are scored as Infection (any) / Lungs (both) only")
    if result.unmatched_predictions:
        print(f"unmatched predictions ({len(result.unmatched_predictions)}): {', '.join(result.unmatched_predictions)}")
    if result.unmatched_references:
        print(f"unmatched references ({len(result.unmatched_references)}): {', '.join(result.unmatched_references)}")
    for line in warning_lines(result.warnings):
        print(line, file=sys.stderr)
    for failure in result.failures:
        print(f"failed: {failure['case']} ({failure['task']}): {failure['error']}")
    print(f"wrote {result.metrics_csv}, {result.summary_json.name}, {result.boxplot_png.name}")
    return 0 if result.ok else 1


def warning_lines(warnings: list[dict]) -> list[str]:
    """One line per task and warning naming its cases: a data set usually repeats one problem in every case."""
    cases: dict[tuple[str, str], list[str]] = {}
    for warning in warnings:
        cases.setdefault((warning["task"], warning["warning"]), []).append(warning["case"])
    return [f"warning ({task}, {len(names)} case(s): {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}): {text}"
            for (task, text), names in cases.items()]
