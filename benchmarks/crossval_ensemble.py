"""Cross-validation of an ensemble of ``lungseg crossval`` runs that share one split.

    python benchmarks/crossval_ensemble.py CONFIG RUN_DIR [RUN_DIR ...] [--folds 5] [--clip-to-lungs MODEL ...] [--json OUT]

CONFIG is the config whose split the runs used (e.g. ``configs/lungsegai_infection.json``; ``--set`` overrides
that only change the model or the extra training data keep its split). Each held-out case is scored with the
mean class probabilities of the runs' models of the fold that never saw it, and with each run's model alone
(which reproduces the runs' own ``crossval.json``). ``--clip-to-lungs MODEL`` also scores the ensemble after
clipping it to MODEL's lungs, as ``lungseg segment`` does (e.g. ``threshold``, ``lungsegai-lungs``).

Runs of other training seeds share the split when they fix it: ``--set seed=1 --set split_seed=0``.

Example (the numbers in docs/models.md), after the three runs of ``lungseg crossval configs/lungsegai_infection.json
--folds 5 -o runs/cv/NAME`` with no ``--set``, ``--set slice_spec.size=224`` and ``--set data=[COVID-SemiSeg only]``:

    python benchmarks/crossval_ensemble.py configs/lungsegai_infection.json runs/cv/base runs/cv/s224 runs/cv/nolidc \\
        --clip-to-lungs threshold lungsegai-lungs
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lungseg_core.evaluation.crossval import UNION, case_scores, held_out_cases, summarize  # noqa: E402
from lungseg_core.inference.segmenter import Segmenter  # noqa: E402
from lungseg_core.preprocessing.slices import labels_from_probabilities  # noqa: E402
from lungseg_core.training.config import load_config  # noqa: E402
from lungseg_core.training.sampling import reduce_labels  # noqa: E402


def fold_model(run_dir: Path, fold: int, name: str, task: str) -> Segmenter:
    return Segmenter(str(run_dir / f"fold_{fold}" / "model" / f"{name}.json"), task, device="cpu")


def check_same_split(run_dirs: list[Path], split: set[tuple[int, str]]) -> None:
    """Every run must have held out exactly the cases this config's split holds out."""
    for run_dir in run_dirs:
        with open(run_dir / "crossval.csv", newline="") as handle:
            held_out = {(int(row["fold"]), row["case"]) for row in csv.DictReader(handle)}
        if held_out != split:
            raise SystemExit(f"{run_dir} held out other cases than the split of the config: not one ensemble")


def score(config, run_dirs: list[Path], folds: int, clip_models: list[str]) -> dict:
    rows: dict[str, list[dict]] = {run.name: [] for run in run_dirs} | {"ensemble": []}
    rows |= {f"ensemble clipped to {model} lungs": [] for model in clip_models}
    lung_models = {model: Segmenter(model, "lungs", device="cpu") for model in clip_models}
    covered: dict[str, list[float]] = {model: [] for model in clip_models}  # reference infection inside the lungs
    split = set()
    for fold in range(folds):
        models = [fold_model(run, fold, config.name, config.task) for run in run_dirs]
        labels = {int(k): v for k, v in models[0].card["labels"].items() if int(k) > 0}
        for entry in held_out_cases(config, fold, folds):
            case = entry.case.load()
            split.add((fold, case.name))
            ref = reduce_labels(case.labels, config.task, config.num_classes)
            probabilities = [model.network_probabilities(case.image) for model in models]
            for run, probs in zip(run_dirs, probabilities):
                rows[run.name].append({"fold": fold, "case": case.name, **case_scores(labels_from_probabilities(probs), ref, labels)})
            mean = labels_from_probabilities(np.mean(probabilities, axis=0))
            rows["ensemble"].append({"fold": fold, "case": case.name, **case_scores(mean, ref, labels)})
            for model, segmenter in lung_models.items():
                lungs = segmenter.predict(case.image) > 0
                covered[model].append(float((lungs & (ref > 0)).sum() / max((ref > 0).sum(), 1)))
                clipped = np.where(lungs, mean, 0)
                rows[f"ensemble clipped to {model} lungs"].append({"fold": fold, "case": case.name,
                                                                   **case_scores(clipped, ref, labels)})
        print(f"fold {fold}: " + ", ".join(f"{k} {np.mean([r[f'dice_{UNION}'] for r in v if r['fold'] == fold]):.3f}"
                                           for k, v in rows.items()), flush=True)
    check_same_split(run_dirs, split)
    summary = {name: summarize(values) for name, values in rows.items()}
    for model, fractions in covered.items():
        summary[f"ensemble clipped to {model} lungs"]["reference_infection_inside_lungs"] = float(np.mean(fractions))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--clip-to-lungs", nargs="*", default=[], metavar="MODEL")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    summary = score(load_config(args.config), args.runs, args.folds, args.clip_to_lungs)
    for name, values in summary.items():
        union = values[UNION]
        inside = values.get("reference_infection_inside_lungs")
        print(f"{name}: any infection Dice {union['dice_mean']:.3f} +/- {union['dice_sd']:.3f} "
              f"(pooled {union['dice_pooled']:.3f}, {union['scored_cases']} cases)"
              + (f"; these lungs hold {100 * inside:.0f}% of the reference infection" if inside is not None else ""))
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "summary": summary}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
