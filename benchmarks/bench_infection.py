"""Accuracy and speed of an infection model on healthy CTs, inserted lesions and COVID slices.

Usage: python benchmarks/bench_infection.py [--model threshold|default|NAME|PATH] [--only ctchest4 phantom lidc lesions covid]
Real data from ../shared/data (skipped when absent); lungs always come from ``classical_lungs`` (and, for
CTChest4, also from the reference segmentation slicerio ships). Prints mL of infection on healthy lungs
(false positives), Dice against known masks, and seconds per call. Lesions are inserted into LIDC-IDRI-0002,
which no shipped infection model trained on; the COVID slices are training data of learned models (their
held-out score comes from `lungseg crossval`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from lungseg_core.io import read_labelmap, read_volume  # noqa: E402
from lungseg_core.inference.segmenter import Segmenter  # noqa: E402
from lungseg_core.models.classical import classical_lungs  # noqa: E402
from lungseg_core.synthetic import make_chest_phantom  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "data"
SECTIONS = ("ctchest4", "phantom", "lidc", "lesions", "covid")
MODEL = {"segmenter": None}  # the infection model under test, chosen by --model


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def timed_infection(volume, lungs):
    start = time.perf_counter()
    infection = MODEL["segmenter"].predict(volume, lungs)
    return infection, time.perf_counter() - start


def summary(name: str, volume, lungs, infection, seconds: float) -> None:
    ml = np.bincount(infection.ravel(), minlength=3)[1:] * volume.voxel_volume_ml
    lung_ml = np.count_nonzero(lungs) * volume.voxel_volume_ml
    print(f"{name}: GGO {ml[0]:.1f} mL, consolidation {ml[1]:.1f} mL, total {ml.sum():.1f} mL "
          f"= {100 * ml.sum() / lung_ml:.2f} % of {lung_ml:.0f} mL lungs ({seconds:.2f} s)", flush=True)


def bench_ctchest4() -> None:
    import slicerio

    volume = read_volume(slicerio.get_testdata_file("CTChest4.nrrd"))
    reference = read_labelmap(slicerio.get_testdata_file("Segmentation.seg.nrrd"), "lungs").array
    for source, lungs in (("classical lungs", classical_lungs(volume)), ("reference lungs", reference)):
        summary(f"CTChest4 (healthy, {source})", volume, lungs, *timed_infection(volume, lungs))


def bench_phantom() -> None:
    for options in ({}, {"ggo": False, "consolidation": False}):
        phantom = make_chest_phantom(**options)
        infection, seconds = timed_infection(phantom.ct, phantom.lungs)
        summary(f"phantom {options or 'with lesions'}", phantom.ct, phantom.lungs, infection, seconds)
        print(f"  GGO Dice {dice(infection == 1, phantom.infection == 1):.3f}, "
              f"consolidation Dice {dice(infection == 2, phantom.infection == 2):.3f}")


def bench_lidc() -> None:
    for case in ("LIDC-IDRI-0001", "LIDC-IDRI-0002"):
        path = SHARED / "lidc" / f"{case}.nii.gz"
        if path.exists():
            volume = read_volume(path)
            lungs = classical_lungs(volume)
            summary(f"{case} (no infection)", volume, lungs, *timed_infection(volume, lungs))


def bench_lesions() -> None:
    try:
        from lungseg_core.synthetic.lesions import LesionSpec, insert_lesions
    except ImportError:
        print("lesions: lungseg_core.synthetic.lesions not available")
        return
    path = SHARED / "lidc" / "LIDC-IDRI-0002.nii.gz"
    if not path.exists():
        return
    volume = read_volume(path)
    lungs = classical_lungs(volume)
    for seed, kinds in ((1, ("ggo",)), (2, ("ggo",)), (3, ("ggo", "consolidation")), (4, ("consolidation",))):
        ct, truth = insert_lesions(volume, lungs, LesionSpec(count=(2, 3), kinds=kinds), seed=seed)
        infection, seconds = timed_infection(ct, lungs)
        truth_ml = np.bincount(truth.ravel(), minlength=3)[1:] * volume.voxel_volume_ml
        print(f"LIDC-IDRI-0002 + lesions {kinds} seed {seed} (truth GGO {truth_ml[0]:.0f} mL, consolidation "
              f"{truth_ml[1]:.0f} mL): GGO Dice {dice(infection == 1, truth == 1):.3f}, consolidation Dice "
              f"{dice(infection == 2, truth == 2):.3f}, infection Dice {dice(infection > 0, truth > 0):.3f} "
              f"({seconds:.2f} s)", flush=True)


def bench_covid() -> None:
    from PIL import Image

    root = SHARED / "covid_semiseg" / "train"
    images = sorted((root / "images").glob("*.jpg"))
    if not images:
        return
    scores, inside = [], []
    for path in images:
        volume = read_volume(path)
        lungs = classical_lungs(volume)
        infection = timed_infection(volume, lungs)[0][0]
        truth = np.array(Image.open(root / "infection" / f"{path.stem}.png"))
        truth = (truth[..., 0] if truth.ndim == 3 else truth) > 127
        scores.append(dice(infection > 0, truth))
        inside.append(dice(lungs[0] > 0, truth))  # everything-in-the-lungs: what the lung mask allows
    print(f"COVID-SemiSeg {len(images)} slices: infection Dice mean {np.mean(scores):.3f}, median "
          f"{np.median(scores):.3f} (labelling all classical lungs as infection: {np.mean(inside):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="infection model: threshold, default, a name or a path")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()
    MODEL["segmenter"] = Segmenter(args.model, "infection", device="cpu")
    print(f"infection model: {MODEL['segmenter'].name}")
    for section in args.only:
        globals()[f"bench_{section}"]()


if __name__ == "__main__":
    main()
