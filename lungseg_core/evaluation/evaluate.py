"""Evaluate a folder of ``lungseg segment`` outputs against a folder of reference segmentations.

For every matched case and task (lungs, infection) the prediction is brought onto the reference grid
(nearest neighbour when the grids differ) and every metric is computed per label plus for the union of
the task's labels (both lungs; any infection). Binary 0/255 PNG masks only mark "infection", so only the
union row is reported for them. Results: ``metrics.csv`` (one row per case, task and label),
``summary.json`` (statistics per task and label, unmatched, skipped and failed cases, units) and
``boxplot.png``; all written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from lungseg_core.errors import InputError, LungSegError, OutputError
from lungseg_core.evaluation.matching import TASKS, CaseFiles, MatchedCase, match_folders
from lungseg_core.io import Volume, read_labelmap, write_atomic, write_text_atomic
from lungseg_core.io.segmentation_files import segmentation_tasks
from lungseg_core.labels import CONSOLIDATION, GGO, INFECTION_LABELS, LEFT_LUNG, LUNG_LABELS, RIGHT_LUNG
from lungseg_core.metrics import compute_label_metrics, metric_columns

CSV_COLUMNS = ["case", "task", "label", "label_name"] + metric_columns()
TASK_CHOICES = ("lungs", "infection", "all")
TASK_LABELS = {
    "lungs": {**LUNG_LABELS, (RIGHT_LUNG, LEFT_LUNG): "Lungs (both)"},
    "infection": {**INFECTION_LABELS, (GGO, CONSOLIDATION): "Infection (any)"},
}
UNITS = {
    "dice": "fraction (0-1)", "iou": "fraction (0-1)", "precision": "fraction (0-1)", "recall": "fraction (0-1)",
    "hd95_mm": "mm", "asd_mm": "mm", "nsd_1mm": "fraction of surface within 1 mm",
    "nsd_3mm": "fraction of surface within 3 mm", "volume_pred_ml": "mL", "volume_ref_ml": "mL",
    "volume_diff_ml": "mL, prediction minus reference",
}
PIXEL_UNITS_NOTE = (
    "2D PNG references have no physical spacing: for their rows spacing is 1, so hd95_mm and asd_mm are in "
    "pixels, nsd_1mm / nsd_3mm use 1 and 3 pixel tolerances, and volume columns are pixel counts / 1000"
)
EMPTY_MASK_NOTE = (
    "a label empty in exactly one of prediction and reference has dice 0, nsd 0 and hd95/asd NaN (no surface "
    "to measure to); NaNs are left out of the statistics and counted in n_nan"
)


@dataclass
class EvaluationResult:
    """What :func:`evaluate_folders` computed and where it wrote it."""

    out_dir: Path
    rows: list[dict]
    summary: dict
    failures: list[dict] = field(default_factory=list)  # {"case", "task", "error"}
    unmatched_predictions: list[str] = field(default_factory=list)
    unmatched_references: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def metrics_csv(self) -> Path:
        return self.out_dir / "metrics.csv"

    @property
    def summary_json(self) -> Path:
        return self.out_dir / "summary.json"

    @property
    def boxplot_png(self) -> Path:
        return self.out_dir / "boxplot.png"


# --------------------------------------------------------------------------------------------- sources
def generic_task(path: Path, requested: str) -> str:
    """The task a reference without a task in its name is taken for.

    An explicit ``--task`` decides. With ``all``, PNG masks are infection (the public 2D data sets are
    infection masks) and volume labelmaps are lungs; pass ``--task infection`` for 3D infection masks.
    """
    if requested != "all":
        return requested
    return "infection" if path.name.lower().endswith(".png") else "lungs"


def prediction_source(files: CaseFiles, task: str) -> Path | None:
    if task in files.task_files:
        return files.task_files[task]
    if files.segmentation is not None and task in segmentation_tasks(files.segmentation):
        return files.segmentation
    return None


def reference_source(files: CaseFiles, task: str, requested: str) -> Path | None:
    if task in files.task_files:
        return files.task_files[task]
    if files.segmentation is not None and task in segmentation_tasks(files.segmentation):
        return files.segmentation
    if files.labelmap is not None and generic_task(files.labelmap, requested) == task:
        return files.labelmap
    return None


def is_binary_png_mask(path: Path) -> bool:
    """A 0/255 PNG marks "infection" without telling GGO from consolidation."""
    if not path.name.lower().endswith(".png"):
        return False
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":
            return False
        return int(np.asarray(image.convert("L")).max()) > 2


# -------------------------------------------------------------------------------------------- geometry
def align_to_reference(pred: Volume, ref: Volume) -> np.ndarray:
    """The prediction's labels on the reference grid (nearest neighbour when the grids differ)."""
    if pred.shape == ref.shape and (not ref.spacing_known or pred.same_geometry(ref)):
        return pred.array
    if not ref.spacing_known or not pred.spacing_known:
        raise InputError(
            f"prediction size {pred.shape[::-1]} differs from the 2D reference size {ref.shape[::-1]} and the "
            "image has no spacing to resample with",
            "segment the same slice the mask was drawn on",
        )
    return _resample_nearest(pred, ref)


def _resample_nearest(pred: Volume, ref: Volume) -> np.ndarray:
    from lungseg_core.preprocessing.resample import resample_like

    array = resample_like(pred.array.astype(np.uint8), pred, ref)
    if pred.array.any() and not array.any():
        raise InputError(
            "prediction and reference do not overlap in patient space (different origin or orientation)",
            "check that both come from the same CT",
        )
    return array


# ---------------------------------------------------------------------------------------- one case
def evaluate_case_task(case: str, task: str, pred_path: Path, ref_path: Path) -> list[dict]:
    """Metric rows of one case and task."""
    ref = read_labelmap(ref_path, task)
    pred = read_labelmap(pred_path, task)
    pred_labels = align_to_reference(pred, ref)
    labels = dict(TASK_LABELS[task])
    if is_binary_png_mask(ref_path):
        labels = {key: name for key, name in labels.items() if isinstance(key, tuple)}
    physical = ref.spacing_known
    spacing_zyx = tuple(ref.spacing[::-1]) if physical else (1.0, 1.0, 1.0)
    rows = compute_label_metrics(pred_labels, ref.array, labels, spacing_zyx, float(np.prod(spacing_zyx)) / 1000.0)
    for row in rows:
        row.update(case=case, task=task, _pixel_units=not physical, _sources=(pred_path, ref_path))
    return rows


def _evaluate_matched(
    matched: MatchedCase, tasks: Iterable[str], requested: str
) -> tuple[list[dict], list[dict], list[dict]]:
    """(rows, failures, skipped) of one matched case."""
    rows, failures, skipped = [], [], []
    for task in tasks:
        try:
            pred_path = prediction_source(matched.pred, task)
            ref_path = reference_source(matched.ref, task, requested)
            if pred_path is None or ref_path is None:
                if pred_path is not None or ref_path is not None:  # one side has it: worth reporting
                    missing = "prediction" if pred_path is None else "reference"
                    skipped.append({"case": matched.case, "task": task, "reason": f"no {task} {missing}"})
                continue
            rows.extend(evaluate_case_task(matched.case, task, pred_path, ref_path))
        except (LungSegError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            message = exc.one_line() if isinstance(exc, LungSegError) else f"{type(exc).__name__}: {exc}"
            failures.append({"case": matched.case, "task": task, "error": message})
    return rows, failures, skipped


# ------------------------------------------------------------------------------------------ summary
def _stats(values: list[float]) -> dict:
    """mean, std (population, ddof=0), median, min, max over the finite values; n finite, n_nan left out."""
    finite = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    n_nan = len(values) - finite.size
    if finite.size == 0:
        return {"mean": None, "std": None, "median": None, "min": None, "max": None, "n": 0, "n_nan": n_nan}
    return {
        "mean": float(finite.mean()), "std": float(finite.std()), "median": float(np.median(finite)),
        "min": float(finite.min()), "max": float(finite.max()), "n": int(finite.size), "n_nan": n_nan,
    }


def summarize(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """task -> label -> {"label_name", "n_cases", metric -> statistics}."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["label"]), []).append(row)
    summary: dict[str, dict[str, dict]] = {}
    for (task, label), group in groups.items():
        entry = {"label_name": group[0]["label_name"], "n_cases": len(group)}
        entry.update({column: _stats([float(r[column]) for r in group]) for column in metric_columns()})
        summary.setdefault(task, {})[label] = entry
    return summary


# -------------------------------------------------------------------------------------------- writing
def _format(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, ".6g")
    return str(value)


def metrics_csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_format(row[column]) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _write_outputs(out_dir: Path, rows: list[dict], summary: dict) -> None:
    from lungseg_core.evaluation.plots import save_boxplot

    try:
        write_text_atomic(out_dir / "metrics.csv", metrics_csv_text(rows))
        write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
        write_atomic(out_dir / "boxplot.png", lambda tmp: save_boxplot(rows, tmp))
    except OSError as exc:
        raise OutputError(
            f"Cannot write evaluation results to '{out_dir}' ({exc.strerror or exc})",
            "choose a writable output folder with -o",
        ) from None


# ------------------------------------------------------------------------------------- worst cases
WORST_CASES_PER_TASK = 3


def worst_cases(rows: list[dict], per_task: int = WORST_CASES_PER_TASK) -> list[dict]:
    """Rows of the lowest whole-task Dice (all labels of the task together), ``per_task`` for each task."""
    chosen = []
    for task in TASKS:
        union_rows = [r for r in rows if r["task"] == task and "+" in str(r["label"]) and not math.isnan(r["dice"])]
        chosen += sorted(union_rows, key=lambda r: r["dice"])[:per_task]
    return chosen


def write_worst_case_overlays(folder: Path, worst: list[dict]) -> list[Path]:
    """OUT/worst_cases/CASE_TASK.png: error map on the slice where prediction and reference differ most."""
    from lungseg_core.evaluation.plots import save_error_overlay

    written = []
    for row in worst:
        pred_path, ref_path = row["_sources"]
        ref = read_labelmap(ref_path, row["task"])
        pred = align_to_reference(read_labelmap(pred_path, row["task"]), ref)
        aspect = ref.spacing[1] / ref.spacing[0] if ref.spacing_known else 1.0
        title = f"{row['case']} ({row['task']}): Dice {row['dice']:.3f}"
        target = folder / f"{row['case']}_{row['task']}.png"
        folder.mkdir(parents=True, exist_ok=True)
        written.append(write_atomic(target, lambda tmp: save_error_overlay(ref.array, pred, aspect, title, tmp)))
    return written


# ----------------------------------------------------------------------------------------------- main
def evaluate_folders(
    pred_dir: str | Path,
    ref_dir: str | Path,
    out_dir: str | Path | None = None,
    task: str = "all",
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate every prediction in ``pred_dir`` that has a reference in ``ref_dir``.

    ``out_dir`` defaults to ``pred_dir/evaluation``. A case that cannot be evaluated is reported in
    ``failures`` (and ``summary.json``) while the others are still done; :class:`InputError` when no case
    names match or no case has both a prediction and a reference for the task.
    """
    if task not in TASK_CHOICES:
        raise InputError(f"Unknown task '{task}'", f"use one of {', '.join(TASK_CHOICES)}")
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    out_dir = Path(out_dir) if out_dir is not None else pred_dir / "evaluation"
    matching = match_folders(pred_dir, ref_dir)
    tasks = TASKS if task == "all" else (task,)

    rows, failures, skipped = [], [], []
    for index, matched in enumerate(matching.cases, start=1):
        if progress:
            print(f"[{index}/{len(matching.cases)}] {matched.case}", file=sys.stderr, flush=True)
        case_rows, case_failures, case_skipped = _evaluate_matched(matched, tasks, task)
        rows += case_rows
        failures += case_failures
        skipped += case_skipped
        if progress:
            for failure in case_failures:
                print(f"  failed ({failure['task']}): {failure['error']}", file=sys.stderr, flush=True)
    if not rows and not failures:
        raise InputError(
            f"No matched case has both a prediction and a reference for task '{task}' "
            f"({len(matching.cases)} matched by name)",
            "check --task, or that the reference files hold the segments of that task",
        )

    pixel_cases = sorted({r["case"] for r in rows if r["_pixel_units"]})
    worst = [dict(r) for r in worst_cases(rows)]  # copies keep their sources for the overlays
    for row in rows:
        del row["_pixel_units"], row["_sources"]  # bookkeeping, not result columns
    summary = {
        "pred_dir": str(pred_dir),
        "ref_dir": str(ref_dir),
        "task": task,
        "n_cases_matched": len(matching.cases),
        "n_cases_evaluated": len({r["case"] for r in rows}),
        "metrics": summarize(rows),
        "units": dict(UNITS),
        "notes": [EMPTY_MASK_NOTE] + ([PIXEL_UNITS_NOTE] if pixel_cases else []),
        "pixel_unit_cases": pixel_cases,
        "unmatched": {
            "predictions": matching.unmatched_predictions,
            "references": matching.unmatched_references,
        },
        "skipped": skipped,
        "failed": failures,
    }
    summary["worst_cases"] = [{"case": r["case"], "task": r["task"], "dice": r["dice"]} for r in worst]
    _write_outputs(out_dir, rows, summary)
    write_worst_case_overlays(out_dir / "worst_cases", worst)
    return EvaluationResult(
        out_dir, rows, summary, failures, matching.unmatched_predictions, matching.unmatched_references
    )
