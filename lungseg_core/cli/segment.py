"""``lungseg segment INPUT [INPUT ...] -o OUTDIR``: segment lungs and infection of CTs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from lungseg_core.errors import InputError
from lungseg_core.inference.device import DEVICE_CHOICES, resolve_device
from lungseg_core.inference.inputs import find_cases
from lungseg_core.inference.pipeline import INTENSITY_CHOICES, TASK_CHOICES, Case, batch_summary, segment_many
from lungseg_core.models import zoo
from lungseg_core.cli.progress import progress_printer

HELP = "Segment right/left lung and infection (GGO, consolidation) in chest CTs; write labelmaps, .seg.nrrd and numbers."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="CT files (NIfTI, NRRD/NHDR, MHA/MHD), DICOM series folders, 2D PNG/JPG slices, "
                             "or folders of such files and series folders (anything else in them is skipped with a "
                             "note)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("--task", choices=TASK_CHOICES, default="all", help="what to segment (default: all)")
    parser.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                        help="model for the task(s): a name from `lungseg models`, 'threshold' (classical, no "
                             "weights), 'default', or a model .json/.safetensors path")
    parser.add_argument("--lung-model", default=None, metavar="NAME_OR_PATH", help="lung model (overrides --model)")
    parser.add_argument("--infection-model", default=None, metavar="NAME_OR_PATH", help="infection model (overrides --model)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="compute device (default: auto)")
    parser.add_argument("--intensity", choices=INTENSITY_CHOICES, default="auto",
                        help="how to read voxel values: auto (HU CT; PNG/JPG slices as 8-bit lung-window images), "
                             "display (8-bit lung-window volumes, e.g. Radiopaedia 0-255 cases), "
                             "raw (scanner values without DICOM rescale: HU = value - 1024)")
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help="skip the CASE.png report picture (saves a few seconds per case in large batches)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo cases whose outputs exist (by default a finished case is skipped, so rerunning an "
                             "interrupted batch resumes it)")
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N",
                        help="segment N cases at once in separate processes, sharing the CPU threads (default: 1); "
                             "each needs the memory of one case")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got '{text}'")
    return value


def expand_inputs(paths: list[Path], output: Path | None = None,
                  note: Callable[[str], None] | None = None) -> list[Case]:
    """The cases of the inputs, with their names (:func:`lungseg_core.inference.inputs.find_cases`); none is an
    error."""
    cases = find_cases(paths, output, note)
    if not cases:
        raise InputError("No input given", "name CT files or folders")
    return cases


def models_for_tasks(model: str | None, lung_model: str | None, infection_model: str | None) -> tuple[str, str]:
    """Route ``--model`` to the task its card declares; names valid for both tasks go to both."""
    lung, infection = "default", "default"
    if model in ("default", zoo.CLASSICAL):
        lung = infection = model
    elif model:
        # a path or shipped name resolves to the same card whichever task is asked; its card says the task
        if zoo.resolve_card(model, "lungs")["task"] == "infection":
            infection = model
        else:
            lung = model
    return lung_model or lung, infection_model or infection


def check_weights(cards: list[dict]) -> None:
    """Verify each chosen network's weights once (present, SHA-256 as its card says, readable): a missing or
    replaced file would otherwise fail every case of a batch in turn. Only the tensors are read (a file of a few
    MB); each case builds its network as before."""
    for card in cards:
        if card["architecture"] != "classical":
            zoo.load_state_dict(card)


def check_models(lung_model: str, infection_model: str, task: str) -> list[dict]:
    """The cards of the models a run of ``task`` uses, their weights verified; :class:`ModelError` for an
    unknown model (naming the valid ones) or weights missing or altered. Also run by Slicer's batch_segment.py."""
    cards = {t: zoo.resolve_card(name, t) for name, t in ((lung_model, "lungs"), (infection_model, "infection"))}
    used = [cards["lungs"]] + ([cards["infection"]] if task != "lungs" else [])
    check_weights(used)
    return used


def run(args: argparse.Namespace) -> int:
    inputs = expand_inputs(args.inputs, args.output,
                           lambda line: print(f"lungseg segment: note: {line}", file=sys.stderr))
    lung_model, infection_model = models_for_tasks(args.model, args.lung_model, args.infection_model)
    # fail fast, before any case runs and before the output folder is made: a missing/unknown model, weights
    # missing or altered, or a GPU that is not there
    used = check_models(lung_model, infection_model, args.task)
    if any(card["architecture"] != "classical" for card in used):  # the classical method runs on the CPU
        resolve_device(args.device)
    log = None if args.quiet else print
    manifest = Path(args.output) / "manifest.csv"
    try:
        outcomes = segment_many(
            inputs, args.output, log=log,
            progress_factory=lambda case, i, n: progress_printer(f"[{i}/{n}] {case}", quiet=args.quiet),
            workers=args.workers, task=args.task, lung_model=lung_model, infection_model=infection_model,
            device=args.device, overwrite=args.overwrite, intensity=args.intensity, report=args.report,
        )
    except KeyboardInterrupt:
        print(f"\nlungseg segment: interrupted; finished cases are listed in {manifest} and no partial file was "
              "left. Run the same command again to resume: finished cases are skipped.", file=sys.stderr)
        return 130
    failed = [o for o in outcomes if o.status not in ("ok", "skipped")]
    if not args.quiet:
        print(f"{batch_summary(outcomes)}; manifest: {manifest}")
        print_case_notes(outcomes, Path(args.output) / "summary.csv")
    for outcome in failed:
        print(f"lungseg segment: error: {outcome.case}: {outcome.error}", file=sys.stderr)
    return 1 if failed else 0


def print_case_notes(outcomes: list, summary_csv: Path) -> None:
    """Say what a case's notes say (no lung found, lung left out, ...), which CASE.json and the picture hold: in
    full for a single case, as a count for a batch (its summary.csv lists them)."""
    notes = [(o.document.get("measurements") or {}).get("notes") or [] for o in outcomes if o.status == "ok"]
    noted = [case_notes for case_notes in notes if case_notes]
    if len(outcomes) == 1 and noted:
        for note in noted[0]:
            print(f"note: {note}")
    elif noted:
        print(f"{len(noted)} case(s) with notes (e.g. no lung found, or lung left out): see the notes column of "
              f"{summary_csv}")
