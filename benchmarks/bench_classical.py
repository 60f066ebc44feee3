"""Time and peak memory of the classical lung segmentation on a real chest CT.

Usage: python benchmarks/bench_classical.py [CT path] [--infection]
Default CT: ../shared/data/lidc/LIDC-IDRI-0002.nii.gz (512x512x261). Prints seconds and peak RSS (the
process high-water mark, so it includes reading the CT).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from lungseg_core.io import read_volume  # noqa: E402
from lungseg_core.models.classical import classical_infection, classical_lungs  # noqa: E402

DEFAULT_CT = REPO_ROOT.parent / "shared" / "data" / "lidc" / "LIDC-IDRI-0002.nii.gz"


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct", nargs="?", default=str(DEFAULT_CT))
    parser.add_argument("--infection", action="store_true", help="also time classical_infection")
    args = parser.parse_args()

    start = time.perf_counter()
    volume = read_volume(args.ct)
    read_s = time.perf_counter() - start
    rss_after_read = peak_rss_mb()
    print(f"input: {args.ct} shape(z,y,x)={volume.shape} spacing(x,y,z)={volume.spacing}")
    print(f"read_volume: {read_s:.2f} s, peak RSS {rss_after_read:.0f} MB")

    start = time.perf_counter()
    lungs = classical_lungs(volume)
    lungs_s = time.perf_counter() - start
    counts = np.bincount(lungs.ravel(), minlength=3)
    litres = counts[1:] * volume.voxel_volume_ml / 1000.0
    print(f"classical_lungs: {lungs_s:.2f} s, peak RSS {peak_rss_mb():.0f} MB "
          f"(right {litres[0]:.2f} L, left {litres[1]:.2f} L)")

    if args.infection:
        start = time.perf_counter()
        infection = classical_infection(volume, lungs)
        counts = np.bincount(infection.ravel(), minlength=3) * volume.voxel_volume_ml
        print(f"classical_infection: {time.perf_counter() - start:.2f} s, peak RSS {peak_rss_mb():.0f} MB "
              f"(GGO {counts[1]:.1f} mL, consolidation {counts[2]:.1f} mL)")


if __name__ == "__main__":
    main()
