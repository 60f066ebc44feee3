"""``lungseg sample-reference OUTDIR``: export the right/left lung labels that ship with CTChest4."""

from __future__ import annotations

import argparse
from pathlib import Path

from lungseg_core.errors import InputError

HELP = "Write the reference lung labelmap of the CTChest4 sample (from slicerio) for evaluation demos."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", type=Path, help="folder for CTChest4_lungs.nii.gz")


def run(args: argparse.Namespace) -> int:
    try:
        import slicerio
    except ImportError:
        raise InputError("the slicerio package is not installed", "pip install slicerio") from None
    from lungseg_core.io import read_labelmap, read_volume, write_labelmap

    ct = read_volume(slicerio.get_testdata_file("CTChest4.nrrd"))
    reference = read_labelmap(slicerio.get_testdata_file("Segmentation.seg.nrrd"), "lungs")
    target = write_labelmap(Path(args.outdir) / "CTChest4_lungs.nii.gz", ct, reference.array)
    print(target)
    return 0
