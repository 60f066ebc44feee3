"""Lung-model accuracy on the checks of the model card: real labels, inserted consolidation, airway and gas.

    python benchmarks/accuracy_lungs.py --model threshold --model lungsegai-lungs [--lesion-seeds 5] [--json OUT]

1. CTChest4 (slicerio's real chest CT with expert right/left lung labels; never used for training):
   Dice per lung.
2. CTChest4 with synthetic lesions inserted into its lungs (the lung labels do not change): Dice per lung, mean
   and minimum over ``--lesion-seeds`` random seeds, for two kinds of case:
   - ``ctchest4_lesions``: mostly consolidation anywhere in the lungs; hole filling brings most of it back;
   - ``ctchest4_subpleural``: large consolidations anywhere on the lung surface (mediastinal and
     diaphragmatic too), open to the pleura, which thresholding plus hole filling cannot recover;
   - ``ctchest4_costal``: the same against the chest wall only, the usual COVID-19 / pneumonia pattern.
3. LIDC-IDRI-0002 (skipped when ../shared/data is absent): lung voxels the model puts more than 5 mm from
   the classical pseudo-label (whose pictures were checked: trachea, bronchi and bowel gas are outside it),
   and how many of those are air (HU < -900): trachea, main bronchi or bowel gas labelled as lung.
   Then the subpleural and costal consolidation of check 2 inserted into LIDC-IDRI-0002 (thin slices), scored
   against that pseudo-label.
4. TotalSegmentator's abdominal example CT (lung bases above the liver dome; skipped when absent): lung mL
   more than 5 mm from the classical lungs, where a network mistakes the liver dome for lung.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungseg_core.inference.segmenter import Segmenter
from lungseg_core.io import read_labelmap, read_volume
from lungseg_core.labels import LEFT_LUNG, RIGHT_LUNG
from lungseg_core.metrics.overlap import dice
from lungseg_core.synthetic.lesions import LesionSpec, insert_lesions

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LIDC_0002 = SHARED_DATA / "lidc" / "LIDC-IDRI-0002.nii.gz"
LUNG_BASES_CT = SHARED_DATA / "totalsegmentator_example" / "example_ct.nii.gz"
# Consolidation-heavy lesions: the hard case for thresholding (dense lung looks like soft tissue).
STRESS_LESIONS = {
    "ctchest4_lesions": LesionSpec(count=(3, 6), kinds=("consolidation", "consolidation", "ggo"), diameter_mm=(30.0, 70.0)),
    "ctchest4_subpleural": LesionSpec(count=(4, 8), kinds=("consolidation",), diameter_mm=(50.0, 90.0),
                                      placement="subpleural"),
    "ctchest4_costal": LesionSpec(count=(4, 8), kinds=("consolidation",), diameter_mm=(50.0, 90.0),
                                  placement="costal"),
}
FAR_MM = 5.0
AIR_HU = -900


def per_lung_dice(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    return {"right": dice(pred == RIGHT_LUNG, ref == RIGHT_LUNG), "left": dice(pred == LEFT_LUNG, ref == LEFT_LUNG)}


def ctchest4_with_reference() -> tuple:
    """slicerio's CTChest4 and its expert lung labels (1 right / 2 left); never used for training."""
    import slicerio

    ct = read_volume(slicerio.get_testdata_file("CTChest4.nrrd"))
    return ct, read_labelmap(slicerio.get_testdata_file("Segmentation.seg.nrrd"), "lungs").array


def lesion_seeds(count: int) -> range:
    """The lesion seeds every lung benchmark uses: 1000, 1001, ..., so their results pair up seed by seed."""
    return range(1000, 1000 + count)


def ctchest4_checks(segmenter: Segmenter, seeds: int) -> dict:
    ct, ref = ctchest4_with_reference()
    started = time.perf_counter()
    result = {"ctchest4": per_lung_dice(segmenter.predict(ct), ref),
              "ctchest4_seconds": round(time.perf_counter() - started, 2)}
    for case, spec in STRESS_LESIONS.items():
        result[case] = stress_checks(segmenter, ct, ref, spec, seeds)
    return result


def stress_checks(segmenter: Segmenter, ct, ref: np.ndarray, spec: LesionSpec, seeds: int) -> dict:
    stressed = []
    for seed in lesion_seeds(seeds):
        lesioned, infection = insert_lesions(ct, ref, spec, seed=seed)
        scores = per_lung_dice(segmenter.predict(lesioned), ref)
        scores["lesion_ml"] = float((infection > 0).sum() * np.prod(ct.spacing) / 1000)
        stressed.append(scores)
    summary: dict = {
        side: {"mean": float(np.mean([s[side] for s in stressed])), "min": float(np.min([s[side] for s in stressed]))}
        for side in ("right", "left")
    }
    summary["lesion_ml_mean"] = float(np.mean([s["lesion_ml"] for s in stressed]))
    return summary


def far_checks(segmenter: Segmenter, ct, pseudo: np.ndarray, name: str) -> dict:
    """Lung the model puts more than ``FAR_MM`` from the checked classical lungs, and the air among it."""
    started = time.perf_counter()
    pred = segmenter.predict(ct)
    seconds = time.perf_counter() - started
    far = (pred > 0) & (ndimage.distance_transform_edt(pseudo == 0, sampling=ct.spacing[::-1]) > FAR_MM)
    air = ct.array < AIR_HU  # trachea, bronchi outside the lungs, bowel gas, outside air
    voxel_ml = float(np.prod(ct.spacing)) / 1000
    return {
        f"{name}_dice_vs_pseudo": per_lung_dice(pred, pseudo),
        f"{name}_far_ml": round(far.sum() * voxel_ml, 2),
        f"{name}_far_air_voxels": int((far & air).sum()),
        f"{name}_seconds": round(seconds, 2),
    }


@functools.lru_cache(maxsize=None)
def with_classical_lungs(path: Path):
    """A CT and its classical lungs (the checked pseudo-label), read once for every model checked."""
    ct = read_volume(path)
    return ct, Segmenter("threshold", "lungs").predict(ct)


def lidc_checks(segmenter: Segmenter, seeds: int) -> dict:
    ct, pseudo = with_classical_lungs(LIDC_0002)
    result = far_checks(segmenter, ct, pseudo, "lidc0002")
    for case in ("subpleural", "costal"):
        result[f"lidc0002_{case}"] = stress_checks(segmenter, ct, pseudo, STRESS_LESIONS[f"ctchest4_{case}"], seeds)
    return result


def lung_bases_checks(segmenter: Segmenter) -> dict:
    return far_checks(segmenter, *with_classical_lungs(LUNG_BASES_CT), "lung_bases")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, help="lung model(s) to check (repeatable)")
    parser.add_argument("--lesion-seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    results = {}
    for model in args.model or ["threshold", "default"]:
        segmenter = Segmenter(model, "lungs", device="cpu")
        result = ctchest4_checks(segmenter, args.lesion_seeds)
        if LIDC_0002.exists():
            result.update(lidc_checks(segmenter, args.lesion_seeds))
        if LUNG_BASES_CT.exists():
            result.update(lung_bases_checks(segmenter))
        results[segmenter.name] = result
        print(json.dumps({segmenter.name: result}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
