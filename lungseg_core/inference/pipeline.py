"""The end-to-end pipeline: CT in, lung and infection labels, Slicer segmentation and numbers out."""

from __future__ import annotations

import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from lungseg_core import __version__
from lungseg_core.errors import InputError, LungSegError, OutputError
from lungseg_core.inference.network import Cancelled, ProgressCallback
from lungseg_core.inference.segmenter import Segmenter
from lungseg_core.io import AtomicGroup, case_name, read_volume, write_labelmap, write_segmentation, write_text_atomic
from lungseg_core.io.tables import rows_to_csv_text
from lungseg_core.io.volume import Volume

TASK_CHOICES = ("lungs", "infection", "all")
INTENSITY_CHOICES = ("auto", "display", "raw")
RAW_CT_OFFSET = 1024  # HU = raw value - 1024 for the usual RescaleIntercept of CT scanners


def apply_intensity_choice(volume: Volume, intensity: str = "auto") -> tuple[Volume, str]:
    """Interpret the input's values: ``auto`` (HU, or a 2D 8-bit slice), ``display`` (8-bit lung-window
    images, also 3D), or ``raw`` (scanner values without the DICOM rescale: subtract 1024)."""
    from lungseg_core.preprocessing import check_intensity

    if intensity not in INTENSITY_CHOICES:
        raise InputError(f"Unknown intensity choice '{intensity}'", f"use one of {', '.join(INTENSITY_CHOICES)}")
    if intensity == "display":
        volume = volume.with_array(volume.array, intensity="display")
    elif intensity == "raw":
        volume = volume.with_array(volume.array.astype(np.float32) - RAW_CT_OFFSET, intensity="hu")
    kind = check_intensity(volume, allow_display=False)
    return volume, kind


@dataclass
class SegmentationResult:
    lungs: np.ndarray | None
    infection: np.ndarray | None
    measurements: dict[str, Any]
    models: list[dict[str, Any]]
    timings: dict[str, float]
    intensity: str = "hu"


@dataclass
class CaseOutcome:
    case: str
    input: str
    status: str  # "ok" or "failed"
    outputs: dict[str, Path] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    note: str = ""  # e.g. which DICOM series of a folder was used
    document: dict[str, Any] = field(default_factory=dict)  # what CASE.json holds, for batch summaries


def _stage_progress(progress: ProgressCallback | None, start: float, span: float) -> ProgressCallback | None:
    """Map a stage's own 0..1 progress into its share of the whole run."""
    if progress is None:
        return None
    return lambda fraction, message: progress(start + span * fraction, message)


def segment_volume(
    volume: Volume,
    task: str = "all",
    lung_model: str = "default",
    infection_model: str = "default",
    device: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    intensity: str = "auto",
) -> SegmentationResult:
    """Segment one CT already in memory. Infection always needs lungs, so ``task='infection'`` computes both."""
    from lungseg_core.reports import quantify

    if task not in TASK_CHOICES:
        raise InputError(f"Unknown task '{task}'", f"use one of {', '.join(TASK_CHOICES)}")
    timings: dict[str, float] = {}
    report = progress or (lambda fraction, message: None)

    started = time.perf_counter()
    lung_segmenter = Segmenter(lung_model, "lungs", device)
    infection_segmenter = Segmenter(infection_model, "infection", device) if task in ("infection", "all") else None
    for segmenter in filter(None, (lung_segmenter, infection_segmenter)):
        segmenter.check_input(volume)
    volume, kind = apply_intensity_choice(volume, intensity)
    timings["checks"] = time.perf_counter() - started

    report(0.02, f"lungs: {lung_segmenter.name}")
    started = time.perf_counter()
    lungs = lung_segmenter.predict(volume, progress=_stage_progress(progress, 0.02, 0.5), cancel=cancel, kind=kind)
    timings["lungs"] = time.perf_counter() - started

    infection = None
    if infection_segmenter is not None:
        report(0.55, f"infection: {infection_segmenter.name}")
        started = time.perf_counter()
        infection = infection_segmenter.predict(volume, lungs=lungs, progress=_stage_progress(progress, 0.55, 0.35),
                                                cancel=cancel, kind=kind)
        timings["infection"] = time.perf_counter() - started

    if cancel is not None and cancel.is_set():
        raise Cancelled("segmentation cancelled")
    report(0.92, "measuring")
    started = time.perf_counter()
    measurements = quantify(volume, lungs, infection)
    timings["quantification"] = time.perf_counter() - started
    report(1.0, "done")
    models = [s.provenance() for s in filter(None, (lung_segmenter, infection_segmenter))]
    return SegmentationResult(lungs, infection, measurements, models, timings, kind)


def output_paths(out_dir: Path, case: str, task: str, report: bool = False) -> dict[str, Path]:
    paths = {"segmentation": out_dir / f"{case}.seg.nrrd", "json": out_dir / f"{case}.json"}
    if task in ("lungs", "all"):
        paths["lungs"] = out_dir / f"{case}_lungs.nii.gz"
    if task in ("infection", "all"):
        paths["infection"] = out_dir / f"{case}_infection.nii.gz"
    if report:
        paths["report"] = out_dir / f"{case}.png"
    return paths


def check_outputs_free(paths: dict[str, Path], overwrite: bool) -> None:
    """Refuse to replace earlier results unless asked: a user's data is never lost silently."""
    existing = [p.name for p in paths.values() if p.exists()]
    if existing and not overwrite:
        folder = next(iter(paths.values())).parent
        raise OutputError(f"Outputs already exist in '{folder}': {', '.join(existing)}",
                          "pass --overwrite to replace them, or choose another output folder")


def task_labelmaps(result: SegmentationResult, task: str) -> dict[str, np.ndarray]:
    """The labelmaps a task writes (infection runs compute lungs too, but only write infection)."""
    labelmaps = {}
    if task in ("lungs", "all") and result.lungs is not None:
        labelmaps["lungs"] = result.lungs
    if task in ("infection", "all") and result.infection is not None:
        labelmaps["infection"] = result.infection
    return labelmaps


def result_document(volume: Volume, result: SegmentationResult, task: str, read_seconds: float) -> dict[str, Any]:
    """Everything CASE.json holds: numbers, geometry, models, timings, version."""
    return {
        "case": volume.name,
        "task": task,
        "input": {"path": volume.metadata.get("source"), "geometry": volume.geometry(),
                  **({"dicom_series": volume.metadata["dicom_series"]} if "dicom_series" in volume.metadata else {})},
        "intensity": result.intensity,
        "measurements": result.measurements,
        "models": result.models,
        "seconds": {"read": round(read_seconds, 3), **{k: round(v, 3) for k, v in result.timings.items()}},
        "lungseg_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_case_outputs(
    volume: Volume,
    result: SegmentationResult,
    task: str,
    paths: dict[str, Path],
    read_seconds: float = 0.0,
    write_segmentation_file: Callable[[Path], Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a case's labelmaps, ``.seg.nrrd``, optional report PNG and CASE.json, all or none.

    ``write_segmentation_file(path)`` lets the Slicer module save the ``.seg.nrrd`` with Slicer's own
    storage node; by default slicerio writes it. Returns the CASE.json document.
    """
    started = time.perf_counter()
    labelmaps = task_labelmaps(result, task)
    with AtomicGroup() as group:
        for name, labels in labelmaps.items():
            write_labelmap(group.path(paths[name]), volume, labels)
        segmentation_path = group.path(paths["segmentation"])
        if write_segmentation_file is None:
            write_segmentation(segmentation_path, volume, labelmaps)
        else:
            write_segmentation_file(segmentation_path)
        if "report" in paths:
            from lungseg_core.reports import render_case_report

            render_case_report(volume, result.lungs, result.infection, result.measurements, group.path(paths["report"]))
        document = result_document(volume, result, task, read_seconds)
        document["seconds"]["write"] = round(time.perf_counter() - started, 3)
        document["seconds"]["total"] = round(read_seconds + sum(result.timings.values()) + document["seconds"]["write"], 3)
        document["outputs"] = {k: p.name for k, p in paths.items()}
        document.update(extra or {})
        group.path(paths["json"]).write_text(json.dumps(document, indent=2, default=json_default) + "\n", encoding="utf-8")
    return document


def segment_case(
    input_path: str | Path,
    out_dir: str | Path,
    task: str = "all",
    lung_model: str = "default",
    infection_model: str = "default",
    device: str = "auto",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    intensity: str = "auto",
    report: bool = False,
) -> CaseOutcome:
    """Segment one input and write its outputs together (all or none). Raises on error."""
    started = time.perf_counter()
    paths = output_paths(Path(out_dir), case_name(input_path), task, report)
    check_outputs_free(paths, overwrite)
    volume = read_volume(input_path)
    read_seconds = time.perf_counter() - started
    result = segment_volume(volume, task, lung_model, infection_model, device, progress, cancel, intensity)
    document = write_case_outputs(volume, result, task, paths, read_seconds)
    return CaseOutcome(volume.name, str(input_path), "ok", paths, seconds=time.perf_counter() - started,
                       note=describe_source(volume), document=document)


def describe_source(volume: Volume) -> str:
    """Which DICOM series a folder input used, in words (empty for plain files)."""
    series = volume.metadata.get("dicom_series")
    if not series:
        return ""
    description = f" '{series['description']}'" if series.get("description") else ""
    return (f"DICOM series {series['series_instance_uid']}{description}, {series['slices']} slices "
            f"(largest CT series of {series['series_found']} found)")


def json_default(value: Any) -> Any:
    """JSON for numpy scalars/arrays and paths; NaN/inf become null (JSON has no NaN)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def segment_many(
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    log: Callable[[str], None] | None = print,
    progress_factory: Callable[[str, int, int], ProgressCallback | None] | None = None,
    **case_options: Any,
) -> list[CaseOutcome]:
    """Segment every input with :func:`segment_case` (``case_options`` are its keyword arguments), continue
    past failures, and write ``OUT/manifest.csv`` and the batch summary."""
    inputs = [Path(p) for p in inputs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[CaseOutcome] = []
    for index, path in enumerate(inputs, start=1):
        started = time.perf_counter()
        progress = progress_factory(case_name(path), index, len(inputs)) if progress_factory else None
        try:
            outcome = segment_case(path, out_dir, progress=progress, **case_options)
        except LungSegError as exc:
            outcome = CaseOutcome(case_name(path), str(path), "failed", error=exc.one_line())
        except Cancelled:
            raise
        except Exception as exc:  # an unexpected bug in one case must not stop a batch of thousands
            outcome = CaseOutcome(case_name(path), str(path), "failed", error=f"internal error: {exc!r}")
            outcome.error += " | " + traceback.format_exc(limit=3).replace("\n", " ")[-400:]
        outcome.seconds = time.perf_counter() - started
        outcomes.append(outcome)
        if log:
            status = "ok" if outcome.status == "ok" else f"FAILED: {outcome.error}"
            status += f"; {outcome.note}" if outcome.note else ""
            log(f"[{index}/{len(inputs)}] {outcome.case}: {status} ({outcome.seconds:.1f} s)")
    write_manifest(out_dir / "manifest.csv", outcomes)
    documents = [o.document for o in outcomes if o.status == "ok"]
    if documents:
        from lungseg_core.reports import write_batch_summary

        write_batch_summary(documents, out_dir)
    return outcomes


MANIFEST_COLUMNS = ["case", "input", "status", "seconds", "error", "outputs"]


def write_manifest(path: Path, outcomes: list[CaseOutcome]) -> Path:
    rows = [{"case": o.case, "input": o.input, "status": o.status, "seconds": o.seconds, "error": o.error,
             "outputs": ";".join(p.name for p in o.outputs.values())} for o in outcomes]
    return write_text_atomic(path, rows_to_csv_text(rows, MANIFEST_COLUMNS))
