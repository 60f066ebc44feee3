"""k-fold cross-validation of a training config: train every fold, then score each fold's best model on the
cases it never saw.

The scores are computed from scratch on the held-out cases at their own resolution (not the training loop's
resized validation slices): per case and per label Dice and IoU, plus the union of the foreground labels
("any infection" / "lung"), which is what papers on the COVID-SemiSeg slices report. Summaries give the
mean and standard deviation over cases (every case counts once) and the pooled Dice over all voxels.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from lungseg_core.io.atomic import write_text_atomic
from lungseg_core.io.tables import rows_to_csv_text
from lungseg_core.labels import label_column
from lungseg_core.metrics.overlap import confusion_counts, scores_from_counts
from lungseg_core.training.config import listed_differences, saved_config_differences

UNION = "any"  # column suffix of the union of all foreground labels


def fold_dir(out_dir: Path, fold: int) -> Path:
    return Path(out_dir) / f"fold_{fold}"


def train_folds(config, out_dir: Path, folds: int, device: str = "auto", epochs: int | None = None,
                command_for: Callable[[int], str] = lambda _fold: "",
                log: Callable[[str], None] | None = print, only: list[int] | None = None) -> list[Path]:
    """Train folds 0..folds-1 (or the ``only`` ones, so that folds can run on several machines into one shared
    folder) into ``OUT/fold_K``; finished folds are kept, interrupted ones resumed (or
    retrained when interrupted before their first epoch ended). A Ctrl-C stops the whole run: the interrupted
    fold's trainer packages its best epoch and returns, and ``KeyboardInterrupt`` is raised here so that no
    further fold starts.

    A fold is kept or resumed only when its ``config.json`` is this run's config of that fold (``--set`` and
    ``--epochs`` applied, ``folds``, ``fold``, the split seed): otherwise nothing is trained and an
    :class:`OutputError` names the keys that differ, since a fold of another split would be scored on cases
    it trained on. ``command_for(fold)`` gives the command line that reproduces one fold (recorded in its
    model card)."""
    from lungseg_core.training.trainer import train

    fold_configs = [fold_config(config, folds, fold, epochs) for fold in range(folds)]
    check_reusable_folds(fold_configs, out_dir)
    run_dirs = []
    for fold in range(folds) if only is None else sorted(set(only)):
        fold_cfg = fold_configs[fold]
        run_dir = fold_dir(out_dir, fold)
        run_dirs.append(run_dir)
        if fold_finished(run_dir):
            if log:
                log(f"fold {fold}: already trained ({run_dir}), kept")
            continue
        resume = (run_dir / "checkpoints" / "last.pt").exists()
        if log:
            log(f"fold {fold}/{folds}: {'resuming' if resume else 'training'} in {run_dir}")
        result = train(fold_cfg, run_dir, resume=resume, device=device, command=command_for(fold), log=log)
        if result.interrupted:  # the trainer took Ctrl-C as a stop request: it stops the crossval too
            if log:
                log(f"fold {fold} interrupted: rerun the same command to resume it")
            raise KeyboardInterrupt
    return run_dirs


def fold_finished(run_dir: Path) -> bool:
    """Whether a fold's training ended (all epochs, or early stopping): its summary.json exists and does not say
    "interrupted". An interrupted fold also has a summary.json, but its model is half-trained: never scored."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and not summary.get("interrupted", False)


def fold_config(config, folds: int, fold: int, epochs: int | None = None):
    """The config fold ``fold`` of ``folds`` trains with (``epochs`` as ``lungseg train --epochs`` applies it)."""
    config = replace(config, folds=folds, fold=fold)
    return config if epochs is None else replace(config, epochs=int(epochs))


def check_reusable_folds(fold_configs: list, out_dir: Path) -> None:
    """Refuse when a finished or interrupted fold in ``out_dir`` was trained with another config than
    ``fold_configs[K]``: keeping it would score a model of another split (or recipe) as this run's fold."""
    problems, stale = [], []
    for fold, config in enumerate(fold_configs):
        run_dir = fold_dir(out_dir, fold)
        if not (fold_finished(run_dir) or (run_dir / "checkpoints" / "last.pt").exists()):
            continue  # nothing to reuse (an interruption in the first epoch saves nothing): trained from scratch
        saved_path = run_dir / "config.json"
        try:
            saved = json.loads(saved_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            problems.append(f"fold_{fold} has no readable config.json")
            stale.append(run_dir)
            continue
        differences = saved_config_differences(saved, config)
        if differences:
            problems.append(f"fold_{fold}: {listed_differences(differences)}")
            stale.append(run_dir)
    if problems:
        from lungseg_core.errors import OutputError

        them = "it" if len(stale) == 1 else "them"
        raise OutputError(
            f"'{out_dir}' holds fold(s) trained with another config than this run, which would be kept and "
            f"scored as this run's ({'; '.join(problems)})",
            f"use a new -o folder, or delete {', '.join(map(str, stale))} to retrain {them}",
        )


def held_out_cases(config, fold: int, folds: int) -> list:
    """The fold's test entries by the trainer's own split: cases its model neither trained nor picked its epoch on."""
    from lungseg_core.training.sampling import open_sources, split_entries

    entries, _, _ = open_sources(config, lambda _msg: None)
    _, _, test_entries = split_entries(entries, fold_config(config, folds, fold))
    return test_entries


def case_scores(pred: np.ndarray, ref: np.ndarray, labels: dict[int, str]) -> dict[str, float]:
    """Dice / IoU per label and for the union of labels (with several labels), plus the counts for pooled Dice."""
    row: dict[str, float] = {}
    keys = list(labels.items()) + ([(None, UNION)] if len(labels) > 1 else [])
    for value, name in keys:
        p, r = (pred > 0, ref > 0) if value is None else (pred == value, ref == value)
        tp, fp, fn = confusion_counts(p, r)
        scores = scores_from_counts(tp, fp, fn)
        column = label_column(name)
        row[f"dice_{column}"] = scores["dice"]
        row[f"iou_{column}"] = scores["iou"]
        row[f"tp_{column}"], row[f"fp_{column}"], row[f"fn_{column}"] = tp, fp, fn
    return row


def score_fold(config, run_dir: Path, fold: int, folds: int, device: str = "cpu") -> list[dict]:
    """One row per held-out case of a trained fold, predicted as ``lungseg segment`` would: lung networks
    with their post-processing (and the classical fusion their card asks for), infection networks as they
    are (the 2D slices have no lung labels to restrict them to)."""
    from lungseg_core.inference.segmenter import Segmenter
    from lungseg_core.training.sampling import reduce_labels

    segmenter = Segmenter(str(Path(run_dir) / "model" / f"{config.name}.json"), config.task, device)
    labels = {int(k): v for k, v in segmenter.card["labels"].items() if int(k) > 0}
    rows = []
    for entry in held_out_cases(config, fold, folds):
        case = entry.case.load()
        if config.task == "lungs":
            pred = reduce_labels(segmenter.network_lungs(case.image), config.task, config.num_classes)
        else:
            pred = segmenter.network_labels(case.image)
        ref = reduce_labels(case.labels, config.task, config.num_classes)
        rows.append({"fold": fold, "case": case.name, **case_scores(pred, ref, labels)})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Mean / sd over cases (NaN where a case has neither prediction nor reference), and pooled Dice."""
    summary: dict = {"cases": len(rows), "folds": sorted({r["fold"] for r in rows})}
    for column in [c[5:] for c in rows[0] if c.startswith("dice_")] if rows else []:
        values = np.array([r[f"dice_{column}"] for r in rows], float)
        values = values[~np.isnan(values)]
        tp, fp, fn = (sum(r[f"{k}_{column}"] for r in rows) for k in ("tp", "fp", "fn"))
        summary[column] = {
            "dice_mean": float(values.mean()) if values.size else math.nan,
            "dice_sd": float(values.std(ddof=1)) if values.size > 1 else math.nan,
            "dice_pooled": scores_from_counts(tp, fp, fn)["dice"],
            "scored_cases": int(values.size),
        }
    return summary


def report_stem(folds: int, scored: list[int]) -> str:
    """``crossval`` when every fold is scored; ``crossval_folds_0_2`` for some of them, so that a run of some
    folds never replaces the report of all of them."""
    scored = sorted(set(scored))
    return "crossval" if scored == list(range(folds)) else "crossval_folds_" + "_".join(map(str, scored))


def write_report(rows: list[dict], out_dir: Path, stem: str = "crossval") -> dict:
    """``STEM.csv`` (one row per case) and ``STEM.json`` (overall and per-fold summaries)."""
    columns = ["fold", "case"] + [c for c in rows[0] if c not in ("fold", "case")]
    write_text_atomic(Path(out_dir) / f"{stem}.csv", rows_to_csv_text(rows, columns))
    report = {"overall": summarize(rows),
              "per_fold": {str(f): summarize([r for r in rows if r["fold"] == f]) for f in sorted({r["fold"] for r in rows})}}
    write_text_atomic(Path(out_dir) / f"{stem}.json", json.dumps(report, indent=2, allow_nan=True) + "\n")
    return report
