"""batch_segment.py without Slicer: argument parsing, input expansion and the batch loop with a fake logic."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import batch_segment
from test_module_import import module  # noqa: F401 - the LungSegAI module, Slicer's GUI parts stubbed
from lungseg_core.inference.pipeline import output_paths
from lungseg_core.io.readers import case_name


class FakeLogic:
    """Records calls; fails for inputs whose name contains 'bad'; writes a case's outputs as the Logic does."""

    def __init__(self, interrupt_at: str | None = None):
        self.calls = []
        self.interrupt_at = interrupt_at

    def segmentFileToFolder(self, input_path, out_dir, task, model, device, overwrite, name=""):
        self.calls.append((Path(input_path).name, task, model, device, overwrite))
        if "bad" in Path(input_path).name:
            raise ValueError("cannot read this CT")
        if Path(input_path).name == self.interrupt_at:
            raise KeyboardInterrupt
        paths = output_paths(Path(out_dir), name or case_name(Path(input_path)), task)
        for path in paths.values():
            path.write_text(json.dumps({"case": path.stem}))
        return paths


def _touch(path: Path, content: bytes = b"data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_parser_defaults_and_choices():
    args = batch_segment.build_parser().parse_args(["--input", "a.nrrd", "b.nii.gz", "--output", "out"])
    assert args.input == ["a.nrrd", "b.nii.gz"] and args.output == "out"
    assert (args.task, args.model, args.device, args.overwrite) == ("all", "default", "auto", False)
    with pytest.raises(SystemExit):
        batch_segment.build_parser().parse_args(["--input", "a", "--output", "o", "--task", "heart"])


def test_bad_arguments_exit_with_status_2(capsys):
    assert batch_segment.main(["--output", "o"], logic=FakeLogic()) == 2
    assert "--input" in capsys.readouterr().err


def test_expand_inputs_files_folders_and_dicom_series(tmp_path):
    a = _touch(tmp_path / "cts" / "b_case.nii.gz")
    b = _touch(tmp_path / "cts" / "a_case.nrrd")
    _touch(tmp_path / "cts" / "notes.txt")
    _touch(tmp_path / "cts" / "old.seg.nrrd")
    series = tmp_path / "cts" / "patient1"
    _touch(series / "IM0001", b"\0" * 128 + b"DICM" + b"rest")
    lone = tmp_path / "dicomdir"
    _touch(lone / "1.dcm")
    cases = batch_segment.expand_inputs([tmp_path / "cts", lone, a])
    assert [(c.path, c.name) for c in cases] == [(b, "a_case"), (a, "b_case"), (series, "patient1"),
                                                  (lone, "dicomdir")]


def test_batch_continues_past_a_failing_case_and_writes_manifest(tmp_path):
    inputs = [_touch(tmp_path / "in" / n) for n in ("one.nrrd", "bad.nrrd", "three.nii.gz")]
    logic = FakeLogic()
    log = []
    status = batch_segment.main(["--input", *map(str, inputs), "--output", str(tmp_path / "out"),
                                 "--task", "lungs", "--model", "threshold", "--device", "cpu"],
                                logic=logic, log=log.append)
    assert status == 1
    assert [c[0] for c in logic.calls] == ["one.nrrd", "bad.nrrd", "three.nii.gz"]
    assert all(c[1:] == ("lungs", "threshold", "cpu", False) for c in logic.calls)
    with open(tmp_path / "out" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case"], r["status"]) for r in rows] == [("one", "ok"), ("bad", "failed"), ("three", "ok")]
    assert "cannot read this CT" in rows[1]["error"]
    assert "one.seg.nrrd" in rows[0]["outputs"]
    assert any("FAILED" in line for line in log)


def test_batch_exit_status_0_when_all_cases_succeed(tmp_path):
    inputs = [_touch(tmp_path / "in" / "x.nrrd")]
    assert batch_segment.main(["-i", str(inputs[0]), "-o", str(tmp_path / "out"), "--overwrite"],
                              logic=FakeLogic(), log=lambda line: None) == 0
    assert (tmp_path / "out" / "manifest.csv").exists()


def test_missing_input_is_a_failed_case_not_a_crash(tmp_path):
    class StrictLogic(FakeLogic):
        def segmentFileToFolder(self, input_path, *args):
            if not Path(input_path).exists():
                raise FileNotFoundError(f"Input '{input_path}' does not exist")
            return super().segmentFileToFolder(input_path, *args)

    status = batch_segment.main(["-i", str(tmp_path / "nope.nrrd"), "-o", str(tmp_path / "out")],
                                logic=StrictLogic(), log=lambda line: None)
    assert status == 1
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv", newline="")))
    assert rows[0]["status"] == "failed" and "does not exist" in rows[0]["error"]


def _manifest(out: Path) -> list[tuple[str, str]]:
    with open(out / "manifest.csv", newline="") as handle:
        return [(r["case"], r["status"]) for r in csv.DictReader(handle)]


def test_rerun_resumes_an_interrupted_batch_and_overwrite_redoes_it(tmp_path):
    inputs = [str(_touch(tmp_path / "in" / n)) for n in ("a.nrrd", "b.nrrd", "c.nrrd")]
    out = tmp_path / "out"
    first = FakeLogic(interrupt_at="b.nrrd")
    assert batch_segment.main(["-i", *inputs, "-o", str(out)], logic=first, log=lambda line: None) == 130
    assert _manifest(out) == [("a", "ok"), ("b", "not run"), ("c", "not run")]

    again = FakeLogic()
    log = []
    assert batch_segment.main(["-i", *inputs, "-o", str(out)], logic=again, log=log.append) == 0
    assert [c[0] for c in again.calls] == ["b.nrrd", "c.nrrd"]  # the finished case is not redone
    assert _manifest(out) == [("a", "skipped"), ("b", "ok"), ("c", "ok")]
    assert "2 of 3 case(s) segmented, 1 skipped" in log[-1]

    redo = FakeLogic()
    assert batch_segment.main(["-i", *inputs, "-o", str(out), "--overwrite"], logic=redo, log=lambda line: None) == 0
    assert [c[0] for c in redo.calls] == ["a.nrrd", "b.nrrd", "c.nrrd"] and all(c[4] for c in redo.calls)


def test_an_unknown_model_exits_2_before_any_case_naming_the_valid_ones(tmp_path):
    logic, log = FakeLogic(), []
    status = batch_segment.main(["-i", str(_touch(tmp_path / "in" / "a.nrrd")), "-o", str(tmp_path / "out"),
                                 "--model", "nosuchmodel"], logic=logic, log=log.append)
    assert status == 2 and logic.calls == [] and not (tmp_path / "out").exists()
    assert "Unknown model 'nosuchmodel'" in log[-1] and "lungsegai-infection" in log[-1]


def test_a_shipped_network_name_is_a_model_as_in_the_cli(tmp_path):
    logic = FakeLogic()
    assert batch_segment.main(["-i", str(_touch(tmp_path / "in" / "a.nrrd")), "-o", str(tmp_path / "out"),
                               "--model", "lungsegai-infection", "--task", "infection"],
                              logic=logic, log=lambda line: None) == 0
    assert logic.calls[0][2] == "lungsegai-infection"


def test_missing_weights_exit_2_before_any_case(tmp_path):
    card = tmp_path / "mine.json"
    card.write_text(json.dumps({"name": "mine", "task": "lungs", "architecture": "unet", "in_channels": 1,
                                "num_classes": 3, "slice_spec": {}, "labels": {}, "sha256": ""}))
    logic, log = FakeLogic(), []
    assert batch_segment.main(["-i", str(_touch(tmp_path / "in" / "a.nrrd")), "-o", str(tmp_path / "out"),
                               "--model", str(card), "--task", "lungs"], logic=logic, log=log.append) == 2
    assert logic.calls == [] and "mine.safetensors' of model 'mine' is missing" in log[-1]


def test_an_unreadable_input_is_a_read_failure_not_an_internal_error(module, tmp_path, monkeypatch):
    """Slicer's reader raises RuntimeError("Failed to load volume ..."): a user's bad file, not a bug."""
    monkeypatch.setattr(module.slicer, "mrmlScene", module.slicer.vtkMRMLScene(), raising=False)
    logic = module.LungSegAILogic()

    def load_case(path):
        raise RuntimeError(f"Failed to load volume from {path}")

    monkeypatch.setattr(logic, "loadCase", load_case)
    fake = _touch(tmp_path / "in" / "fake.nrrd", b"not an image")
    assert batch_segment.main(["-i", str(fake), "-o", str(tmp_path / "out"), "--model", "threshold"],
                              logic=logic, log=lambda line: None) == 1
    error = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv", newline="")))[0]["error"]
    assert error.startswith("Cannot read 'fake.nrrd': Failed to load volume") and "internal error" not in error
    assert "Traceback" not in error and "line " not in error


def test_script_arguments_follow_the_script_path(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/opt/Slicer", "--no-main-window", "--python-script",
                                     "/x/batch_segment.py", "--input", "a", "--output", "b"])
    assert batch_segment._script_arguments() == ["--input", "a", "--output", "b"]


def test_series_folders_with_the_same_name_under_different_patients_are_named_by_their_path(tmp_path):
    """CD exports repeat series folder names (PAT00001/SER00001, PAT00002/SER00001): each case its own outputs."""
    for patient in ("PAT00001", "PAT00002"):
        _touch(tmp_path / "DICOM" / patient / "SER00001" / "IM0001", b"\0" * 128 + b"DICM" + b"rest")
    out = tmp_path / "out"
    logic = FakeLogic()
    assert batch_segment.main(["-i", str(tmp_path / "DICOM"), "-o", str(out)], logic=logic, log=lambda line: None) == 0
    assert _manifest(out) == [("PAT00001_SER00001", "ok"), ("PAT00002_SER00001", "ok")]
    assert (out / "PAT00001_SER00001.json").exists() and (out / "PAT00002_SER00001.json").exists()
    again = FakeLogic()
    assert batch_segment.main(["-i", str(tmp_path / "DICOM"), "-o", str(out)], logic=again, log=lambda line: None) == 0
    assert again.calls == [] and _manifest(out) == [("PAT00001_SER00001", "skipped"), ("PAT00002_SER00001", "skipped")]
