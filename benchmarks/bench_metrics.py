"""Seconds for every metric on a CT-sized (261 x 512 x 512) pair of lung-like masks.

    python benchmarks/bench_metrics.py [--repeat 3]

The reference is two lung-sized ellipsoids (about 5.5 L together at 1.25 x 0.68 x 0.68 mm, the
LIDC-IDRI-0002 grid); the prediction is the same shapes shifted and slightly grown, so that every surface
voxel has a non-trivial distance. Prints the time of the overlap metrics, of the shared surface-distance
pass (HD95 + ASD + NSD at 1 and 3 mm), of the volumes, and of ``compute_label_metrics`` over right, left
and both lungs as ``lungseg evaluate`` runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lungseg_core.metrics import compute_label_metrics, overlap_metrics, surface_distances, volume_ml

SHAPE = (261, 512, 512)
SPACING_ZYX = (1.25, 0.68, 0.68)


def lung_labels(shift_zyx: tuple[int, int, int] = (0, 0, 0), grow: float = 1.0) -> np.ndarray:
    """Right (1) and left (2) lungs as half-ellipsoids of realistic size on the benchmark grid."""
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    labels = np.zeros(SHAPE, np.uint8)
    for label, centre_x in ((1, 160), (2, 352)):
        cz, cy, cx = 140 + shift_zyx[0], 250 + shift_zyx[1], centre_x + shift_zyx[2]
        inside = ((z - cz) / (100 * grow)) ** 2 + ((y - cy) / (130 * grow)) ** 2 + ((x - cx) / (85 * grow)) ** 2 <= 1
        labels[inside] = label
    return labels


def timed(function, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument("--compare-edt", action="store_true", help="also time the pure-EDT surface path")
    args = parser.parse_args()

    ref = lung_labels()
    pred = lung_labels(shift_zyx=(2, 3, -2), grow=1.03)
    ref_mask, pred_mask = ref > 0, pred > 0
    voxel_ml = float(np.prod(SPACING_ZYX)) / 1000.0
    reference_ml = volume_ml(ref_mask, voxel_ml=voxel_ml)
    print(f"grid {SHAPE} (z, y, x), spacing {SPACING_ZYX} mm, reference {reference_ml:.0f} mL")

    t_overlap, overlap = timed(lambda: overlap_metrics(pred_mask, ref_mask), args.repeat)
    t_surface, distances = timed(lambda: surface_distances(pred_mask, ref_mask, SPACING_ZYX), args.repeat)
    t_derived, derived = timed(
        lambda: (distances.hd95(), distances.asd(), distances.nsd(1.0), distances.nsd(3.0)), args.repeat
    )
    t_volume, _ = timed(
        lambda: (volume_ml(pred_mask, voxel_ml=voxel_ml), volume_ml(ref_mask, voxel_ml=voxel_ml)), args.repeat
    )
    labels = {1: "Right lung", 2: "Left lung", (1, 2): "Lungs (both)"}
    t_labels, rows = timed(lambda: compute_label_metrics(pred, ref, labels, SPACING_ZYX, voxel_ml), args.repeat)

    print(f"dice {overlap['dice']:.4f}  hd95 {derived[0]:.2f} mm  asd {derived[1]:.2f} mm  "
          f"nsd@1mm {derived[2]:.3f}  nsd@3mm {derived[3]:.3f}")
    print(f"overlap metrics (dice, iou, precision, recall): {t_overlap:.2f} s")
    print(f"surface distances (method auto):                {t_surface:.2f} s")
    print(f"hd95 + asd + nsd from the distances:            {t_derived:.2f} s")
    print(f"volumes:                                        {t_volume:.2f} s")
    print(f"all metrics, one binary pair:                   {t_overlap + t_surface + t_derived + t_volume:.2f} s")
    if args.compare_edt:
        t_edt, edt = timed(lambda: surface_distances(pred_mask, ref_mask, SPACING_ZYX, method="edt"), 1)
        print(f"surface distances (method edt, for comparison): {t_edt:.2f} s (hd95 {edt.hd95():.2f} mm)")
    print(f"compute_label_metrics (right, left, both):      {t_labels:.2f} s for {len(rows)} rows")


if __name__ == "__main__":
    main()
