"""Two lung models on CTChest4 with the same inserted lesions, seed by seed: a paired comparison.

    python benchmarks/compare_lung_models.py BASELINE CANDIDATE [--case ctchest4_costal] [--lesion-seeds 12] [--json OUT]

BASELINE and CANDIDATE are model names or card paths. An earlier shipped model comes out of git, e.g.
``mkdir old && for f in json safetensors; do git show 787dee3:lungseg_core/resources/models/lungsegai-lungs.$f
> old/lungsegai-lungs.$f; done`` and then ``old/lungsegai-lungs.json``.

For each case (the lesion kinds of ``benchmarks/accuracy_lungs.py``; default: chest wall and any lung surface)
and each lesion seed (1000, 1001, ...), both models segment the same CT; per case and lung it prints the mean
Dice difference (candidate - baseline), on how many seeds the candidate is better, and its worst seed. Mean
Dice alone hides whether a small gain holds seed by seed.
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
from lungseg_core.models import zoo  # noqa: E402
from lungseg_core.synthetic.lesions import insert_lesions  # noqa: E402

SIDES = ("right", "left")


def paired_summary(rows: list[dict]) -> dict:
    """Per lung: mean difference, seeds where the candidate is better, and the worst seed's difference."""
    summary = {}
    for side in SIDES:
        diff = np.array([row["candidate"][side] - row["baseline"][side] for row in rows])
        summary[side] = {"mean_difference": round(float(diff.mean()), 4), "candidate_better": int((diff > 0).sum()),
                         "seeds": len(rows), "worst_difference": round(float(diff.min()), 4)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline")
    parser.add_argument("candidate")
    parser.add_argument("--case", action="append", choices=sorted(STRESS_LESIONS), default=None)
    parser.add_argument("--lesion-seeds", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None, help="write the per-seed rows and summaries here")
    args = parser.parse_args()
    ct, ref = ctchest4_with_reference()
    models = {role: Segmenter(name, "lungs", device="cpu") for role, name in
              (("baseline", args.baseline), ("candidate", args.candidate))}
    results = {}
    for case in args.case or ["ctchest4_costal", "ctchest4_subpleural"]:
        rows = []
        for seed in lesion_seeds(args.lesion_seeds):
            lesioned, _ = insert_lesions(ct, ref, STRESS_LESIONS[case], seed=seed)
            rows.append({"seed": seed, **{role: per_lung_dice(m.predict(lesioned), ref) for role, m in models.items()}})
        results[case] = {"summary": paired_summary(rows), "per_seed": rows}
        print(json.dumps({case: results[case]["summary"]}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        models_run = {role: {"model": name, "sha256": zoo.resolve_card(name, "lungs").get("sha256")}
                      for role, name in (("baseline", args.baseline), ("candidate", args.candidate))}
        args.json.write_text(json.dumps({**models_run, **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
