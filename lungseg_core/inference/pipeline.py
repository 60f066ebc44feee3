"""The end-to-end pipeline: CT in, lung and infection labels, Slicer segmentation and numbers out."""

from __future__ import annotations

import json
import os
import signal
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
from lungseg_core.inference.network import Cancelled, ProgressCallback, stage_progress
from lungseg_core.inference.segmenter import Segmenter
from lungseg_core.io import AtomicGroup, case_name, read_volume, write_labelmap, write_segmentation, write_text_atomic
from lungseg_core.io.atomic import remove_stale_temporaries
from lungseg_core.io.tables import rows_to_csv_text
from lungseg_core.io.volume import Volume

TASK_CHOICES = ("lungs", "infection", "all")
INTENSITY_CHOICES = ("auto", "display", "raw")
RAW_CT_OFFSET = 1024  # HU = raw value - 1024 for the usual RescaleIntercept of CT scanners
# Peak memory of a whole `lungseg segment` case per input voxel: 9.2 bytes measured on the 512x512x600 CT
# of benchmarks/bench_segment.py (1.45 GB peak RSS, classical method, task "all", report on), with margin
# for networks' per-slice buffers. read_volume refuses a CT whose header says it would not fit
# (see docs/robustness.md).
SEGMENT_BYTES_PER_VOXEL = 16


def apply_intensity_choice(volume: Volume, intensity: str = "auto") -> tuple[Volume, str]:
    """Interpret the input's values: ``auto`` (HU, or a 2D 8-bit slice), ``display`` (8-bit lung-window
    images, also 3D), or ``raw`` (scanner values without the DICOM rescale: subtract 1024)."""
    from lungseg_core.preprocessing.intensity import as_display, check_intensity, check_rescaled_raw

    if intensity not in INTENSITY_CHOICES:
        raise InputError(f"Unknown intensity choice '{intensity}'", f"use one of {', '.join(INTENSITY_CHOICES)}")
    if intensity == "display":
        volume = as_display(volume)  # refuses values outside 0..255
    elif intensity == "raw":
        volume = volume.with_array(volume.array.astype(np.float32) - RAW_CT_OFFSET, intensity="hu")
    kind = check_intensity(volume, allow_display=False)
    if intensity == "raw":
        check_rescaled_raw(volume)
    # the methods and the report notes read volume.intensity, CASE.json records kind: they must be one value
    return (volume if volume.intensity == kind else volume.with_array(volume.array, intensity=kind)), kind


@dataclass
class SegmentationResult:
    lungs: np.ndarray | None
    infection: np.ndarray | None
    measurements: dict[str, Any]
    models: list[dict[str, Any]]
    timings: dict[str, float]
    intensity: str = "hu"
    lung_notes: list[str] = field(default_factory=list)  # the lung step's notes, also in measurements["notes"]


@dataclass(frozen=True)
class Case:
    """One case of a batch: its input and the name its outputs get (CASE_lungs.nii.gz, CASE.json, manifest)."""
    path: Path
    name: str


def as_case(item: str | Path | Case) -> Case:
    """``item`` as a :class:`Case`; a bare path is named by :func:`case_name` (a file or folder given as is)."""
    return item if isinstance(item, Case) else Case(Path(item), case_name(item))


@dataclass
class CaseOutcome:
    case: str
    input: str
    status: str  # "ok", "failed", "skipped" (already done) or "not run" (batch interrupted first)
    outputs: dict[str, Path] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    note: str = ""  # e.g. which DICOM series of a folder was used
    document: dict[str, Any] = field(default_factory=dict)  # what CASE.json holds, for batch summaries


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
    lung_notes: list[str] = []
    lungs = lung_segmenter.predict(volume, progress=stage_progress(progress, 0.02, 0.5), cancel=cancel, kind=kind,
                                   notes=lung_notes)
    timings["lungs"] = time.perf_counter() - started

    infection = None
    if infection_segmenter is not None:
        report(0.55, f"infection: {infection_segmenter.name}")
        started = time.perf_counter()
        infection = infection_segmenter.predict(volume, lungs=lungs, progress=stage_progress(progress, 0.55, 0.35),
                                                cancel=cancel, kind=kind)
        timings["infection"] = time.perf_counter() - started

    if cancel is not None and cancel.is_set():
        raise Cancelled("segmentation cancelled")
    report(0.92, "measuring")
    started = time.perf_counter()
    measurements = quantify(volume, lungs, infection)
    measurements["notes"] += lung_notes
    timings["quantification"] = time.perf_counter() - started
    report(1.0, "done")
    models = [s.provenance() for s in filter(None, (lung_segmenter, infection_segmenter))]
    return SegmentationResult(lungs, infection, measurements, models, timings, kind, lung_notes)


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


def check_outputs_spare_inputs(targets: Iterable[Path], inputs: Iterable[str | Path]) -> None:
    """Never write over an input, even with --overwrite (e.g. CASE.png of a PNG slice in its own folder, or
    a batch's manifest.csv among its inputs)."""
    sources = {Path(p).resolve(): p for p in inputs}
    for target in targets:
        if Path(target).resolve() in sources:
            raise OutputError(f"Output '{Path(target).name}' would replace the input '{sources[Path(target).resolve()]}'",
                              "choose another output folder (-o)")


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
    parts: dict[str, float] = {}  # seconds of each kind of output, for benchmarks/bench_segment.py
    labelmaps = task_labelmaps(result, task)
    if "report" in paths:
        from lungseg_core.reports.render3d import start_offscreen_probe

        start_offscreen_probe()  # the ~1 s OpenGL probe subprocess runs while the labelmaps are written
    with AtomicGroup() as group:
        for name, labels in labelmaps.items():
            write_labelmap(group.path(paths[name]), volume, labels)
        parts["write_labelmaps"] = time.perf_counter() - started
        segmentation_path = group.path(paths["segmentation"])
        if write_segmentation_file is None:
            write_segmentation(segmentation_path, volume, labelmaps)
        else:
            write_segmentation_file(segmentation_path)
        parts["write_segmentation"] = time.perf_counter() - started - sum(parts.values())
        if "report" in paths:
            from lungseg_core.reports import render_case_report

            render_case_report(volume, result.lungs, result.infection, result.measurements, group.path(paths["report"]))
            parts["write_report"] = time.perf_counter() - started - sum(parts.values())
        document = result_document(volume, result, task, read_seconds)
        document["seconds"].update({k: round(v, 3) for k, v in parts.items()})
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
    name: str | None = None,
) -> CaseOutcome:
    """Segment one input and write its outputs together (all or none), named ``name`` (default: the input's
    :func:`case_name`). Raises on error."""
    started = time.perf_counter()
    name = name or case_name(input_path)
    paths = output_paths(Path(out_dir), name, task, report)
    check_outputs_spare_inputs(paths.values(), [input_path])
    check_outputs_free(paths, overwrite)
    volume = read_volume(input_path, SEGMENT_BYTES_PER_VOXEL)
    volume.name = name  # CASE.json's "case" and the report title say the name the outputs have
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
    inputs: Iterable[str | Path | Case],
    out_dir: str | Path,
    log: Callable[[str], None] | None = print,
    progress_factory: Callable[[str, int, int], ProgressCallback | None] | None = None,
    workers: int = 1,
    **case_options: Any,
) -> list[CaseOutcome]:
    """Segment every input with :func:`segment_case` (``case_options`` are its keyword arguments), continue
    past failures, and write ``OUT/manifest.csv`` and the batch summary. An input is a path (named by
    :func:`case_name`) or a :class:`Case` with its name (as :func:`lungseg_core.inference.inputs.find_cases` gives).

    A case whose outputs all exist (a finished case of an earlier or interrupted run) is skipped unless
    ``overwrite`` is set. ``workers`` > 1 segments cases in that many processes (no per-case progress then);
    the manifest keeps the input order. On Ctrl-C (KeyboardInterrupt) or :class:`Cancelled` the running
    cases stop without leaving files, the manifest records what finished and the exception propagates:
    running the same batch again resumes it.
    """
    cases = [as_case(p) for p in inputs]
    inputs = [case.path for case in cases]
    out_dir = Path(out_dir)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}", "use --workers 1 (default) or more")
    check_outputs_spare_inputs([out_dir / name for name in BATCH_FILES], inputs)
    if out_dir.exists() and not out_dir.is_dir():  # e.g. `-o ct.nii.gz`: mkdir would end in a traceback
        raise OutputError(f"Output '{out_dir}' is an existing file, not a folder",
                          "-o must be a folder: give a new or existing folder for the results")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the path, no permission, a read-only disk: one line, no traceback
        raise OutputError(f"Cannot create the output folder '{out_dir}' ({exc.strerror or exc})",
                          "-o must be a folder you can write to") from None
    outcomes: list[CaseOutcome | None] = [None] * len(inputs)
    todo = plan_batch(cases, out_dir, case_options, outcomes)

    def announce(index: int) -> None:
        outcome = outcomes[index]
        if log and outcome is not None:
            log(outcome_line(outcome, index, len(inputs)))

    try:
        for index in range(len(inputs)):
            announce(index)  # skipped cases and name clashes, decided before any work
        if workers > 1 and len(todo) > 1:
            _run_in_processes(cases, todo, out_dir, min(workers, len(todo)), case_options, outcomes, announce)
        else:
            for index in todo:
                case = cases[index]
                progress = progress_factory(case.name, index + 1, len(inputs)) if progress_factory else None
                outcomes[index] = run_one_case(case, out_dir, progress, case_options)
                announce(index)
    except (KeyboardInterrupt, Cancelled):
        write_manifest(out_dir / "manifest.csv", unfinished_outcomes(outcomes, cases))
        if log:
            finished = sum(o is not None for o in outcomes)
            log(f"interrupted: {finished} of {len(inputs)} case(s) finished or skipped; manifest: {out_dir / 'manifest.csv'}")
        raise
    done = [o for o in outcomes if o is not None]
    write_manifest(out_dir / "manifest.csv", done)
    documents = [o.document for o in done if o.status in ("ok", "skipped") and o.document]
    if documents:
        from lungseg_core.reports import write_batch_summary

        write_batch_summary(documents, out_dir)
    return done


SKIPPED_NOTE = "already done; --overwrite to redo"
NOT_RUN_NOTE = "batch interrupted before this case finished; rerun the same command to resume"
BATCH_FILES = ("manifest.csv", "summary.csv", "summary.png")


def run_one_case(case: Path | Case, out_dir: Path, progress: ProgressCallback | None,
                 case_options: dict[str, Any]) -> CaseOutcome:
    """:func:`segment_case` for a batch: a user error or a bug becomes a failed outcome, not an exception."""
    case = as_case(case)
    return guarded_outcome(case, lambda: segment_case(case.path, out_dir, progress=progress, name=case.name,
                                                      **case_options))


def guarded_outcome(case: Path | Case, work: Callable[[], CaseOutcome]) -> CaseOutcome:
    """``work()`` timed; a user error or a bug becomes a failed outcome (Ctrl-C and cancelling still stop)."""
    case = as_case(case)
    path, name = case.path, case.name
    started = time.perf_counter()
    try:
        outcome = work()
    except LungSegError as exc:
        outcome = CaseOutcome(name, str(path), "failed", error=exc.one_line())
    except Cancelled:
        raise
    except Exception as exc:  # an unexpected bug in one case must not stop a batch of thousands
        outcome = CaseOutcome(name, str(path), "failed", error=f"internal error: {exc!r}")
        outcome.error += " | " + traceback.format_exc(limit=3).replace("\n", " ")[-400:]
    outcome.seconds = time.perf_counter() - started
    return outcome


def outcome_line(outcome: CaseOutcome, index: int, total: int) -> str:
    """The progress line of one case of a batch."""
    status = {"ok": "ok", "skipped": f"skipped ({outcome.note})"}.get(outcome.status, f"FAILED: {outcome.error}")
    status += f"; {outcome.note}" if outcome.note and outcome.status == "ok" else ""
    return f"[{index + 1}/{total}] {outcome.case}: {status} ({outcome.seconds:.1f} s)"


def batch_summary(outcomes: list[CaseOutcome]) -> str:
    """'N of M case(s) segmented[, K skipped (already done)]'."""
    skipped = sum(o.status == "skipped" for o in outcomes)
    done = sum(o.status == "ok" for o in outcomes)
    return f"{done} of {len(outcomes)} case(s) segmented" + (f", {skipped} skipped (already done)" if skipped else "")


def plan_batch(inputs: list[Path | Case], out_dir: Path, case_options: dict[str, Any],
               outcomes: list[CaseOutcome | None]) -> list[int]:
    """Indices of the inputs (paths or :class:`Case`) to segment. Finished cases (skipped) and inputs whose
    case name an earlier input already has (their outputs would collide) get their outcome in ``outcomes`` now."""
    task, report = case_options.get("task", "all"), case_options.get("report", False)
    first_with_name: dict[str, Path] = {}
    todo = []
    for index, item in enumerate(map(as_case, inputs)):
        path, case = item.path, item.name
        if case in first_with_name:
            error = OutputError(f"Input '{path}' has the same case name '{case}' as '{first_with_name[case]}': "
                                "their outputs would collide", "rename one, or segment them into separate output folders")
            outcomes[index] = CaseOutcome(case, str(path), "failed", error=error.one_line())
            continue
        first_with_name[case] = path
        paths = output_paths(out_dir, case, task, report)
        document = None if case_options.get("overwrite") else finished_case_document(paths)
        if document is not None:
            outcomes[index] = CaseOutcome(case, str(path), "skipped", paths, note=SKIPPED_NOTE, document=document)
        else:
            for target in paths.values():
                remove_stale_temporaries(target)
            todo.append(index)
    return todo


def finished_case_document(paths: dict[str, Path]) -> dict[str, Any] | None:
    """CASE.json of a case whose outputs all exist, else None.

    A case's outputs are written as one atomic group (every file or none), so all of them present with a
    readable CASE.json means the case finished; some present means they are not ours or another task's,
    and segment_case refuses to replace them without --overwrite.
    """
    if not all(p.exists() for p in paths.values()):
        return None
    try:
        document = json.loads(paths["json"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def unfinished_outcomes(outcomes: list[CaseOutcome | None], inputs: list[Path | Case]) -> list[CaseOutcome]:
    """The manifest rows of an interrupted batch: what finished, and "not run" for the rest."""
    cases = [as_case(item) for item in inputs]
    return [o if o is not None else CaseOutcome(c.name, str(c.path), "not run", note=NOT_RUN_NOTE)
            for o, c in zip(outcomes, cases)]


_worker_cancel: Any = None  # in a worker process: the batch's multiprocessing Event


def _init_worker(cancel: Any, torch_threads: int) -> None:
    """Set up a worker process: Ctrl-C is handled by the parent, which sets ``cancel``; share the CPUs."""
    global _worker_cancel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_cancel = cancel
    import torch

    torch.set_num_threads(torch_threads)


def _run_case_in_worker(case: Case, out_dir: Path, case_options: dict[str, Any]) -> CaseOutcome | None:
    """One case in a worker process; None when the batch was interrupted first (no file is left)."""
    if _worker_cancel.is_set():
        return None
    try:
        return run_one_case(case, out_dir, None, {**case_options, "cancel": _worker_cancel})
    except Cancelled:
        return None


def _run_in_processes(inputs: list[Case], todo: list[int], out_dir: Path, workers: int, case_options: dict[str, Any],
                      outcomes: list[CaseOutcome | None], announce: Callable[[int], None]) -> None:
    """Segment ``inputs[todo]`` in ``workers`` processes, filling ``outcomes`` as cases finish.

    On Ctrl-C the running cases are cancelled at their next check (their files are cleaned up), queued
    ones never start, and every case that still finished is recorded before the interrupt propagates.
    """
    import concurrent.futures as cf
    import multiprocessing

    if case_options.get("cancel") is not None:
        raise ValueError("segment_many: 'cancel' needs workers=1 (a parallel batch is stopped with Ctrl-C)")
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
    cancel = context.Event()
    threads = max(1, (os.cpu_count() or 1) // workers)
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(cancel, threads)) as pool:
        futures = {pool.submit(_run_case_in_worker, inputs[i], out_dir, case_options): i for i in todo}
        try:
            for future in cf.as_completed(futures):
                outcomes[futures[future]] = _worker_outcome(future, inputs[futures[future]])
                announce(futures[future])
        except BaseException:
            cancel.set()
            for future in futures:
                future.cancel()
            for future in cf.wait(futures).done:
                if not future.cancelled() and outcomes[futures[future]] is None:
                    outcomes[futures[future]] = _worker_outcome(future, inputs[futures[future]])
            raise


def _worker_outcome(future: Any, case: Path | Case) -> CaseOutcome | None:
    """A worker's outcome; a worker that died (e.g. killed for memory) fails its case, not the batch."""
    try:
        return future.result()
    except Exception as exc:
        case = as_case(case)
        return CaseOutcome(case.name, str(case.path), "failed",
                           error=f"worker process failed ({exc!r}); rerun with fewer --workers or check the memory")


MANIFEST_COLUMNS = ["case", "input", "status", "seconds", "error", "outputs", "note"]


def write_manifest(path: Path, outcomes: list[CaseOutcome]) -> Path:
    rows = [{"case": o.case, "input": o.input, "status": o.status, "seconds": o.seconds, "error": o.error,
             "outputs": ";".join(p.name for p in o.outputs.values()), "note": o.note} for o in outcomes]
    return write_text_atomic(path, rows_to_csv_text(rows, MANIFEST_COLUMNS))
