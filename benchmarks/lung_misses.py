"""Where a classical + network lung model loses lung on CTs with inserted consolidation: which rule dropped it.

    python benchmarks/lung_misses.py [--model lungsegai-lungs] [--case ctchest4_costal] [--lesion-seeds 12] [--json OUT]

For each lesion seed (1000, 1001, ... as in ``benchmarks/accuracy_lungs.py``) it inserts the case's lesions into
CTChest4 (slicerio; the expert lung labels stay the reference), segments, and splits the reference lung voxels
the result misses by the first rule of ``lungseg_core.postprocessing.add_dense_lung`` that dropped them:

- ``network``: the network itself called them not lung;
- ``air``: below ``DENSE_LUNG_MIN_HU`` (in CTChest4's reference: some trachea and main bronchi, and apices);
- ``thin``: narrower than ``THINNEST_DENSE_LUNG_MM`` in-plane;
- ``gate``: not open to the chest wall (lung lies further out on the ray from the body's centre), and not kept
  as a region the network is sure of where the gate leaves out much;
- ``same_plane``: passed every rule but touches no lung in its own plane.

It also counts the voxels wrongly labelled lung, by whether the classical method or the network put them there,
the mL of the network's dense lung that the gate leaves out (``left_out_ml``; at
``MUCH_DENSE_LUNG_LEFT_OUT_ML`` or more the case gets a note, counted in the summary) and the mL of it kept
because the network is sure of it there (``confident_ml``), also on CTChest4 without lesions; and the Dice a
perfect gate would give (``perfect_gate``: every reference lung voxel of the ``"wide"`` stage kept, nothing else),
the most any better gate could win with this network. Only for models whose card has ``combine_with_classical``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_lungs import STRESS_LESIONS, ctchest4_with_reference, lesion_seeds, per_lung_dice  # noqa: E402

from lungseg_core.inference.segmenter import Segmenter  # noqa: E402
from lungseg_core.postprocessing.lungs import (  # noqa: E402
    add_dense_lung,
    confident_dense_lung_ml,
    dense_lung_stages,
    left_out_dense_lung_ml,
    left_out_dense_lung_notes,
)
from lungseg_core.synthetic.lesions import insert_lesions  # noqa: E402

# the rule that keeps a stage of dense_lung_stages, named by what it drops, in the order the rules apply
DROPPED_BY = {"dense": "air", "wide": "thin", "kept": "gate"}


def missed_by_rule(missed: np.ndarray, stages: dict[str, np.ndarray]) -> dict[str, int]:
    """Missed voxels per rule that dropped them: a voxel in stage k's mask but not in k+1's was dropped by rule
    k+1; one outside the first stage was never network lung; one in the last was dropped by the same-plane rule."""
    names = ["network", *DROPPED_BY]  # "open" (within "kept") drops nothing that "kept" adds
    counts = {"network": int((missed & ~stages[names[0]]).sum())}
    for before, after in zip(names, names[1:]):
        counts[DROPPED_BY[after]] = int((missed & stages[before] & ~stages[after]).sum())
    counts["same_plane"] = int((missed & stages[names[-1]]).sum())
    return counts


def seed_row(segmenter: Segmenter, ct, ref: np.ndarray, case: str, seed: int) -> dict:
    lesioned, _ = insert_lesions(ct, ref, STRESS_LESIONS[case], seed=seed)
    classical, network, hu, region_probability = segmenter.fusion_inputs(lesioned)
    stages = dense_lung_stages(classical, network > 0, hu, lesioned, region_probability)
    labels = add_dense_lung(classical, network > 0, hu, lesioned, stages)
    row = {"seed": seed, **{side: round(value, 4) for side, value in per_lung_dice(labels, ref).items()}}
    perfect = dict(stages, kept=stages["kept"] | (stages["wide"] & (ref > 0)))
    row["perfect_gate"] = {side: round(value, 4) for side, value in
                           per_lung_dice(add_dense_lung(classical, network > 0, hu, lesioned, perfect), ref).items()}
    missed = (ref > 0) & (labels == 0)
    row["missed"] = int(missed.sum())
    row["missed_by"] = missed_by_rule(missed, stages)
    wrong = (labels > 0) & (ref == 0)
    row["false_lung"] = {"classical": int((wrong & (classical > 0)).sum()),
                         "network": int((wrong & (classical == 0)).sum())}
    row.update(left_out(stages, lesioned))
    return row


def left_out(stages: dict[str, np.ndarray], ct) -> dict:
    """mL of the network's dense lung the gate leaves out, whether the case gets the note about it, and the mL of it
    kept because the network is sure of it."""
    return {"left_out_ml": round(left_out_dense_lung_ml(stages, ct), 1),
            "note": bool(left_out_dense_lung_notes(stages, ct)),
            "confident_ml": round(confident_dense_lung_ml(stages, ct), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lungsegai-lungs")
    parser.add_argument("--case", default="ctchest4_costal", choices=sorted(STRESS_LESIONS))
    parser.add_argument("--lesion-seeds", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    segmenter = Segmenter(args.model, "lungs", device="cpu")
    if not segmenter.card.get("combine_with_classical"):
        parser.error(f"model '{args.model}' does not combine with the classical method: nothing to split")
    ct, ref = ctchest4_with_reference()
    classical, network, hu, region_probability = segmenter.fusion_inputs(ct)
    healthy = left_out(dense_lung_stages(classical, network > 0, hu, ct, region_probability), ct)
    print(json.dumps({"healthy_ctchest4": healthy}), flush=True)
    rows = []
    for seed in lesion_seeds(args.lesion_seeds):
        rows.append(seed_row(segmenter, ct, ref, args.case, seed))
        print(json.dumps(rows[-1]), flush=True)
    missed = sum(row["missed"] for row in rows)
    summary = {"share_of_missed": {rule: round(sum(row["missed_by"][rule] for row in rows) / max(missed, 1), 3)
                                   for rule in rows[0]["missed_by"]}}
    summary.update({side: {"mean": round(float(np.mean([row[side] for row in rows])), 4),
                           "min": round(float(np.min([row[side] for row in rows])), 4)} for side in ("right", "left")})
    summary["perfect_gate"] = {side: round(float(np.mean([row["perfect_gate"][side] for row in rows])), 4)
                               for side in ("right", "left")}
    summary["noted_cases"] = sum(row["note"] for row in rows)
    summary["healthy_ctchest4"] = healthy
    print(json.dumps(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": segmenter.name, "case": args.case, "rows": rows,
                                         "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
