"""How much dense tissue a lung model's network calls lung and the chest-wall gate leaves out on healthy CTs.

    python benchmarks/healthy_left_out.py [--model lungsegai-lungs] [--json OUT]

``MUCH_DENSE_LUNG_LEFT_OUT_ML`` (the line past which a case gets a note and the regions the network is sure of are
added back) must sit well above what healthy CTs give, or the heart and the liver dome would be added as lung. This
measures it on the healthy CTs here: CTChest4 (10 mm slices), LIDC-IDRI-0001/0002 as they are (1.25-2.5 mm) and
made 5 and 10 mm thick with 4 x 4 in-plane block means (about 2.8 mm pixels, as CTChest4 has), and the
abdominal CT with lung bases over the liver dome. CTs missing from ../shared/data are skipped. Per CT it gives
``left_out_ml``, ``note`` and ``confident_ml`` as ``benchmarks/lung_misses.py`` does.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_lungs import LIDC_0002, LUNG_BASES_CT, ctchest4_with_reference  # noqa: E402
from lung_misses import left_out  # noqa: E402

from lungseg_core.inference.segmenter import Segmenter  # noqa: E402
from lungseg_core.io import read_volume  # noqa: E402
from lungseg_core.models.classical import _block_mean  # noqa: E402
from lungseg_core.postprocessing.lungs import dense_lung_stages  # noqa: E402
from lungseg_core.synthetic.thick_slices import thicken_slices  # noqa: E402

LIDC_CTS = (LIDC_0002.with_name("LIDC-IDRI-0001.nii.gz"), LIDC_0002)
THICK_MM = (5.0, 10.0)
IN_PLANE_BLOCK = 4


def thick_coarse(ct, thickness_mm: float):
    """``ct`` with slices averaged to about ``thickness_mm`` and IN_PLANE_BLOCK x IN_PLANE_BLOCK pixel means."""
    thick, _ = thicken_slices(ct, np.zeros(ct.shape, np.uint8), int(round(thickness_mm / ct.spacing[2])))
    coarse = np.rint(_block_mean(thick.array, (1, IN_PLANE_BLOCK, IN_PLANE_BLOCK))).astype(np.int16)
    spacing = (thick.spacing[0] * IN_PLANE_BLOCK, thick.spacing[1] * IN_PLANE_BLOCK, thick.spacing[2])
    return replace(thick, array=coarse, spacing=spacing)


def healthy_cts():
    """(name, CT) of every healthy CT found here."""
    yield "CTChest4", ctchest4_with_reference()[0]
    for path in LIDC_CTS:
        if path.exists():
            ct = read_volume(path)
            name = path.name.split(".")[0]
            yield name, ct
            for mm in THICK_MM:
                yield f"{name} {mm:.0f} mm, {IN_PLANE_BLOCK}x{IN_PLANE_BLOCK} pixels", thick_coarse(ct, mm)
    if LUNG_BASES_CT.exists():
        yield "abdominal CT (lung bases)", read_volume(LUNG_BASES_CT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lungsegai-lungs")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    segmenter = Segmenter(args.model, "lungs")
    rows = []
    for name, ct in healthy_cts():
        classical, network, hu, region_probability = segmenter.fusion_inputs(ct)
        rows.append({"ct": name, **left_out(dense_lung_stages(classical, network > 0, hu, ct, region_probability), ct)})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": segmenter.name, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
