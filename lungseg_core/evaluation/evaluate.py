"""Evaluate a folder of ``lungseg segment`` outputs against a folder of reference segmentations.

For every matched case and task (lungs, infection) the prediction is brought onto the reference grid
(nearest neighbour when the grids differ) and every metric is computed per label plus for the union of
the task's labels (both lungs; any infection). References are read in lungseg's convention (lungs 1 right /
2 left by patient side, infection 1 GGO / 2 consolidation), with two exceptions scored on the union row only:
folders of binary masks, which mark "infection" or "lung" without classes or sides (decided once per folder
and task by :func:`reference_conventions`), and lung references whose label 1 lies on the patient's left of
label 2, as in data sets that number the left lung 1 (with a warning that says how to fix them). Results: ``metrics.csv`` (one row per case, task and label),
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
from lungseg_core.evaluation.matching import (
    SEG_SUFFIX,
    TASKS,
    CaseFiles,
    MatchedCase,
    index_folder,
    is_plain_labelmap,
    match_folders,
)
from lungseg_core.io import Volume, read_labelmap, read_volume, write_atomic, write_text_atomic
from lungseg_core.io.readers import (BINARY_MASK_VALUE, MAX_INDEX_IN_GREY_MASK, MAX_LABEL_VALUE, is_image_file,
                                     present_values)
from lungseg_core.io.volume import sides_swapped
from lungseg_core.text import shown_list
from lungseg_core.io.segmentation_files import segmentation_tasks
from lungseg_core.labels import CONSOLIDATION, GGO, INFECTION_LABELS, LEFT_LUNG, LUNG_LABELS, RIGHT_LUNG
from lungseg_core.metrics import compute_label_metrics, metric_columns

CSV_COLUMNS = ["case", "task", "label", "label_name"] + metric_columns()
# what evaluate_folders writes into its output folder (the Slicer panel loads them back by these names)
METRICS_CSV, SUMMARY_JSON, BOXPLOT_PNG = "metrics.csv", "summary.json", "boxplot.png"
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
BINARY_NOTE = (
    "binary references (0/255 masks, or a folder whose plain labelmaps all hold only 1) mark the task's region "
    "without its classes or sides: only the union row (Infection (any), Lungs (both)) is scored for them"
)
SWAPPED_SIDES_WARNING = (
    "the reference's right lung (label 1) lies on the patient's left of its left lung (label 2) in the image "
    "geometry: it numbers the lungs 1 = left, 2 = right (as COVID-19-CT-Seg's lung_mask and many nnU-Net sets "
    "do), lungseg 1 = right, 2 = left by patient side. Only 'Lungs (both)' is scored; swap values 1 and 2 in "
    "the reference to score each lung"
)
_BOOKKEEPING = ("_pixel_units", "_binary", "_warning", "_sources")  # row keys for the report, not result columns
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
    warnings: list[dict] = field(default_factory=list)  # {"case", "task", "warning"}

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def metrics_csv(self) -> Path:
        return self.out_dir / METRICS_CSV

    @property
    def summary_json(self) -> Path:
        return self.out_dir / SUMMARY_JSON

    @property
    def boxplot_png(self) -> Path:
        return self.out_dir / BOXPLOT_PNG


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


@dataclass
class Reference:
    """A reference as scored: its labels in lungseg's convention, the label rows it can be scored on, and
    why it was scored on fewer of them."""

    volume: Volume
    labels: dict
    binary: bool = False
    warning: str = ""


def read_reference(path: Path, task: str, binary_folder: bool) -> Reference:
    """The reference labelmap of ``task`` with the label rows its folder's convention allows
    (``binary_folder``: see :func:`reference_conventions`)."""
    ref = read_labelmap(path, task)
    # checked again: evaluate_folders' probe leaves a reference it cannot read or check out of the decision
    check_label_values(present_values(ref.array) - {0}, path, task)
    union_only = {key: name for key, name in TASK_LABELS[task].items() if isinstance(key, tuple)}
    if scored_as_binary(path, binary_folder):
        # a 0/255 mask already reads as 0/1; any foreground is the region the union row counts
        return Reference(ref.with_array((ref.array > 0).astype(np.uint8)), union_only, binary=True)
    if task == "lungs" and sides_contradict_geometry(ref):
        return Reference(ref, union_only, warning=SWAPPED_SIDES_WARNING)
    return Reference(ref, dict(TASK_LABELS[task]))


def scored_as_binary(path: Path, binary_folder: bool) -> bool:
    """Slicer segments are named by class or side, so a .seg.nrrd is never binary, whatever its folder."""
    return binary_folder and not path.name.lower().endswith(SEG_SUFFIX)


def sides_contradict_geometry(ref: Volume) -> bool:
    """Whether a lung reference holds both lungs and its label 1 lies toward the patient's left of label 2, by
    the test the training readers apply to data sets (``sides_swapped``). 2D masks without spacing have no
    patient geometry to test against."""
    if not ref.spacing_known:
        return False
    right, left = ref.array == RIGHT_LUNG, ref.array == LEFT_LUNG
    return bool(right.any() and left.any()) and sides_swapped(ref, right, left)


# ------------------------------------------------------------------------------------ reference labels
def check_label_values(values: set[int], path: Path, task: str) -> None:
    """Refuse a reference whose foreground values cannot be the task's labels rather than score nonsense:
    values above them are another convention (e.g. MedSeg's 0..3)."""
    labels = {"lungs": LUNG_LABELS, "infection": INFECTION_LABELS}[task]
    unexpected = sorted(values - set(labels))
    if unexpected:
        meaning = ", ".join(f"{value} {name}" for value, name in labels.items())
        shown = ", ".join(str(v) for v in unexpected[:5]) + (", ..." if len(unexpected) > 5 else "")
        raise InputError(
            f"Reference '{path.name}' holds label values {shown}, which are not {task} labels "
            f"(0 background, {meaning})",
            "recode it to these values, or evaluate the task its labels are for",
        )


# what a reference's own values (and name) say about its convention
BINARY, LABELLED, EITHER = "binary", "labelled", "either"


@dataclass(frozen=True)
class ProbedReference:
    path: Path
    values: frozenset  # foreground values as read_labelmap gives them (a 0/255 mask's 255 reads as 1)
    vote: str  # BINARY, LABELLED or EITHER


def probe_reference(path: Path, task: str) -> ProbedReference:
    """Read one reference's values, check them (:func:`check_label_values`) and say which convention they imply.

    Whether a mask was 0/255 must come from the raw file: read_labelmap has made it 0/1 by then."""
    if is_image_file(path):
        values = present_values(read_labelmap(path, task).array) - {0}
        raw_binary = _grey_mask_above_indices(path)  # read_labelmap took it, so it was 0/255 (or a lossy JPEG)
    else:
        raw = _raw_volume_values(path, task)
        raw_binary = raw == {BINARY_MASK_VALUE}
        values = {1} if raw_binary else raw
    check_label_values(values, path, task)
    return ProbedReference(path, frozenset(values), _vote(path, values, raw_binary))


def _raw_volume_values(path: Path, task: str) -> set[int]:
    array = read_volume(path).array
    if array.min(initial=0) < 0 or array.max(initial=0) > MAX_LABEL_VALUE:
        array = read_labelmap(path, task).array  # raises readers' refusal (a CT given as a mask), naming the values
    return present_values(array) - {0}


def _grey_mask_above_indices(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":  # palette PNGs hold label indices
            return False
        return int(np.asarray(image.convert("L")).max()) > MAX_INDEX_IN_GREY_MASK


def _vote(path: Path, values: set[int], raw_binary: bool) -> str:
    if raw_binary:
        return BINARY  # 255 is never a label index: a 0/255 export marks a region, whatever the file's name
    if values - {1}:
        return LABELLED  # a 2 is a class (consolidation) or a side (left lung)
    if values and not is_plain_labelmap(path):
        return LABELLED  # named like lungseg's outputs (CASE_infection.nii.gz): a lone 1 is GGO / the right lung
    return EITHER  # a plain 0/1 mask: binary, or lungseg labels of a GGO-only / one-lung case


def binary_convention(probes: list[ProbedReference], task: str) -> bool:
    """Whether a folder's ``task`` references are binary masks, decided once for the folder: a plain 0/1 file
    is GGO only (one lung) among labelled references and a binary mask otherwise. A folder holding both
    0/255 masks and labelled references is refused: per-case decisions would score a biased subset."""
    binary = [p for p in probes if p.vote == BINARY]
    labelled = [p for p in probes if p.vote == LABELLED]
    if binary and labelled:
        raise InputError(
            f"The {task} references mix two conventions: binary 0/255 masks ({_named(binary)}) and lungseg labels "
            f"({_named(labelled)})",
            "evaluate them as two --ref folders, one per convention (binary masks get the union row only)",
        )
    return not labelled


def _named(probes: list[ProbedReference], limit: int = 2) -> str:
    return shown_list((f"'{p.path.name}'" for p in probes), limit)


def reference_conventions(references: list[CaseFiles], tasks: Iterable[str], requested: str,
                          keep_going: bool) -> dict[str, bool]:
    """task -> whether the references of that task are binary (:func:`binary_convention`), from every
    reference. ``keep_going``: a reference that cannot be read or checked is left out of the decision (its
    case then fails on its own when scored) instead of raising."""
    conventions = {}
    for task in tasks:
        probes = []
        for files in references:
            path = reference_source(files, task, requested)
            if path is None or path.name.lower().endswith(SEG_SUFFIX):
                continue  # segments are named: no convention to decide
            try:
                probes.append(probe_reference(path, task))
            except (LungSegError, OSError, ValueError, RuntimeError, MemoryError):
                if not keep_going:
                    raise
        conventions[task] = binary_convention(probes, task)
    return conventions


def check_reference_folder(ref_dir: str | Path, task: str) -> None:
    """Read and check every reference of ``ref_dir`` for ``task`` (values, one convention per folder): a
    label file cannot stop a long segmentation run half-way. Reading labels is cheap next to segmenting."""
    references = list(index_folder(ref_dir, "reference").values())
    reference_conventions(references, TASKS if task == "all" else (task,), task, keep_going=False)


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
def evaluate_case_task(case: str, task: str, pred_path: Path, ref_path: Path, binary_folder: bool) -> list[dict]:
    """Metric rows of one case and task."""
    reference = read_reference(ref_path, task, binary_folder)
    ref = reference.volume
    pred_labels = align_to_reference(read_labelmap(pred_path, task), ref)
    physical = ref.spacing_known
    spacing_zyx = tuple(ref.spacing[::-1]) if physical else (1.0, 1.0, 1.0)
    rows = compute_label_metrics(
        pred_labels, ref.array, reference.labels, spacing_zyx, float(np.prod(spacing_zyx)) / 1000.0
    )
    for row in rows:
        row.update(case=case, task=task, _pixel_units=not physical, _binary=reference.binary,
                   _warning=reference.warning, _sources=(pred_path, ref_path))
    return rows


def _evaluate_matched(
    matched: MatchedCase, tasks: Iterable[str], requested: str, binary: dict[str, bool]
) -> tuple[list[dict], list[dict], list[dict]]:
    """(rows, failures, skipped) of one matched case; ``binary``: task -> the folder's convention."""
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
            rows.extend(evaluate_case_task(matched.case, task, pred_path, ref_path, binary[task]))
        except (LungSegError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            message = exc.one_line() if isinstance(exc, LungSegError) else f"{type(exc).__name__}: {exc}"
            failures.append({"case": matched.case, "task": task, "error": message})
    return rows, failures, skipped


# ------------------------------------------------------------------------------------------ summary
def reference_warnings(rows: list[dict]) -> list[dict]:
    """``{"case", "task", "warning"}`` for each case and task whose reference came with a warning."""
    found = {(r["case"], r["task"]): r["_warning"] for r in rows if r["_warning"]}
    return [{"case": case, "task": task, "warning": text} for (case, task), text in found.items()]


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
        write_text_atomic(out_dir / METRICS_CSV, metrics_csv_text(rows))
        write_text_atomic(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2, allow_nan=False) + "\n")
        write_atomic(out_dir / BOXPLOT_PNG, lambda tmp: save_boxplot(rows, tmp))
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
        ref = read_reference(ref_path, row["task"], row["_binary"]).volume
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
    if progress:
        print(f"checking {len(matching.cases)} reference(s)", file=sys.stderr, flush=True)
    binary = reference_conventions([m.ref for m in matching.cases], tasks, task, keep_going=True)

    rows, failures, skipped = [], [], []
    for index, matched in enumerate(matching.cases, start=1):
        if progress:
            print(f"[{index}/{len(matching.cases)}] {matched.case}", file=sys.stderr, flush=True)
        case_rows, case_failures, case_skipped = _evaluate_matched(matched, tasks, task, binary)
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
    binary_cases = sorted({r["case"] for r in rows if r["_binary"]})
    warnings = reference_warnings(rows)
    worst = [dict(r) for r in worst_cases(rows)]  # copies keep their sources for the overlays
    for row in rows:
        for key in _BOOKKEEPING:
            del row[key]
    summary = {
        "pred_dir": str(pred_dir),
        "ref_dir": str(ref_dir),
        "task": task,
        "n_cases_matched": len(matching.cases),
        "n_cases_evaluated": len({r["case"] for r in rows}),
        "metrics": summarize(rows),
        "units": dict(UNITS),
        "notes": [EMPTY_MASK_NOTE] + ([PIXEL_UNITS_NOTE] if pixel_cases else [])
        + ([BINARY_NOTE] if binary_cases else []),
        "pixel_unit_cases": pixel_cases,
        "binary_reference_cases": binary_cases,
        "warnings": warnings,
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
        out_dir, rows, summary, failures, matching.unmatched_predictions, matching.unmatched_references, warnings
    )
