"""Segment many chest CTs with 3D Slicer, without a window.

    Slicer --no-main-window --python-script batch_segment.py --input CT_DIR_OR_FILES... --output OUT
           [--task all|lungs|infection] [--model default|threshold|PATH/NAME.json] [--device auto|cpu|cuda]
           [--overwrite]

Each CT (a file, or a folder holding one DICOM series) is loaded into Slicer's scene and segmented by the
module's Logic, exactly as the Apply button does. For each case OUT gets what ``lungseg segment`` writes
(CASE_lungs.nii.gz, CASE_infection.nii.gz, CASE.json) plus CASE.seg.nrrd saved by Slicer itself; a
failing case is recorded and the batch goes on; a case whose outputs all exist is skipped (rerunning an
interrupted batch resumes it; --overwrite redoes it); OUT/manifest.csv lists every case; the exit status is 1
if any case failed, 2 for bad arguments.

The argument parsing and the batch loop take the logic as a parameter, so they are tested without Slicer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Protocol, Sequence

TASKS = ("all", "lungs", "infection")


class CaseLogic(Protocol):
    """What the batch needs from the module Logic (``LungSegAILogic`` provides it inside Slicer)."""

    def segmentFileToFolder(self, input_path: Path, out_dir: Path, task: str, model: str, device: str,
                            overwrite: bool, case_name: str = "") -> dict[str, Path]:
        ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch_segment.py",
        description="Segment lungs and lung infection in chest CTs with 3D Slicer (headless).",
    )
    parser.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH",
                        help="CT files, folders of CT files, or DICOM series folders")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--task", choices=TASKS, default="all", help="what to segment (default: all)")
    parser.add_argument("--model", default="default",
                        help="model id from Resources/models.json (default, threshold, ...), a shipped network name "
                             "from `lungseg models` (e.g. lungsegai-infection) or a NAME.json model file")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where networks run (default: auto = GPU when present)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo cases whose outputs exist (by default a finished case is skipped, so rerunning an "
                             "interrupted batch resumes it)")
    return parser


def expand_inputs(paths: Sequence[str | Path], output: Path | None = None,
                  note: Callable[[str], None] | None = None) -> list:
    """One entry (path and name) per case, by the rule of ``lungseg segment``
    (:func:`lungseg_core.inference.inputs.find_cases`): files as given, a DICOM series folder as one case, a
    folder's CT files and series folders (named by their path below it); the rest noted."""
    from lungseg_core.inference.inputs import find_cases

    return find_cases([Path(p) for p in paths], output, note)


def run_batch(args: argparse.Namespace, logic: CaseLogic, log: Callable[[str], None] = print) -> int:
    """Segment every case, write OUT/manifest.csv, return the exit status (0 all ok, 1 some failed).

    Like ``lungseg segment``, a case whose outputs all exist is skipped unless ``--overwrite``, so rerunning
    an interrupted batch resumes it; on Ctrl-C the manifest still lists what finished."""
    from lungseg_core.inference.pipeline import (batch_summary, outcome_line, plan_batch, unfinished_outcomes,
                                                 write_manifest)

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = expand_inputs(args.input, out_dir, lambda line: log(f"batch_segment: note: {line}"))
    if not cases:
        log(f"batch_segment: error: no CT found in {', '.join(map(str, args.input))}")
        write_manifest(out_dir / "manifest.csv", [])
        return 1
    outcomes = [None] * len(cases)
    todo = set(plan_batch(cases, out_dir, {"task": args.task, "overwrite": args.overwrite}, outcomes))
    try:
        for index, case in enumerate(cases):
            if index in todo:
                outcomes[index] = _segment_one(logic, case, out_dir, args)
            log(outcome_line(outcomes[index], index, len(cases)))
    except KeyboardInterrupt:
        write_manifest(out_dir / "manifest.csv", unfinished_outcomes(outcomes, cases))
        log(f"interrupted; rerun the same command to resume. Manifest: {out_dir / 'manifest.csv'}")
        return 130
    write_manifest(out_dir / "manifest.csv", outcomes)
    log(f"{batch_summary(outcomes)}; manifest: {out_dir / 'manifest.csv'}")
    return 1 if any(o.status not in ("ok", "skipped") for o in outcomes) else 0


def _segment_one(logic: CaseLogic, case, out_dir: Path, args: argparse.Namespace):
    """One case (a ``Case`` of find_cases, or a path) through the Logic, its outputs named by the case's name;
    an error becomes a failed outcome so the batch goes on."""
    from lungseg_core.inference.pipeline import CaseOutcome, as_case, guarded_outcome

    case = as_case(case)

    def work() -> CaseOutcome:
        outputs = logic.segmentFileToFolder(case.path, out_dir, args.task, args.model, args.device, args.overwrite,
                                            case.name)
        return CaseOutcome(case.name, str(case.path), "ok", dict(outputs))

    return guarded_outcome(case, work)


def check_model(model: str, task: str) -> None:
    """Refuse an unknown model, or one whose weights are missing or altered, before any case is read, as
    ``lungseg segment`` does; otherwise every case of the batch would load and then fail in turn."""
    _put_module_on_path()
    from LungSegAILib import catalog
    from lungseg_core.cli.segment import check_models

    check_models(*catalog.resolve_selection(catalog.load_catalog(), model), task)


def main(argv: Sequence[str] | None = None, logic: CaseLogic | None = None,
         log: Callable[[str], None] = print) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad arguments; keep that as our status
        return int(exc.code or 0)
    from lungseg_core.errors import LungSegError

    try:
        check_model(args.model, args.task)
    except (LungSegError, ValueError, OSError) as exc:  # a bad --model is a bad argument: status 2, like argparse
        log(f"batch_segment: error: {exc}")
        return 2
    if logic is None:
        logic = _slicer_logic()
    return run_batch(args, logic, log)


def _slicer_logic() -> CaseLogic:
    """The module's Logic (needs Slicer)."""
    _put_module_on_path()
    import LungSegAI  # noqa: WPS433 - needs Slicer

    return LungSegAI.LungSegAILogic()


def _put_module_on_path() -> None:
    """batch_segment.py sits beside LungSegAI.py and LungSegAILib, which Slicer may not have on its path yet."""
    folder = str(Path(__file__).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _script_arguments() -> list[str]:
    """Slicer passes ``--python-script FILE ARGS``; sys.argv then holds FILE ARGS."""
    argv = list(sys.argv)
    for index, value in enumerate(argv):
        if Path(value).name == Path(__file__).name:
            return argv[index + 1:]
    return argv[1:]


if __name__ == "__main__":
    status = main(_script_arguments())
    try:
        import slicer  # noqa: WPS433

        if hasattr(slicer, "app"):
            slicer.util.exit(status)  # leaves the Slicer application with our status
    except ImportError:
        pass
    sys.exit(status)
