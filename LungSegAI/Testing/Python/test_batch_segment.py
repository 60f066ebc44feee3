"""batch_segment.py without Slicer: argument parsing, input expansion and the batch loop with a fake logic."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import batch_segment
from lungseg_core.io.readers import case_name


class FakeLogic:
    """Records calls; fails for inputs whose name contains 'bad'; writes one output file per case."""

    def __init__(self):
        self.calls = []

    def segmentFileToFolder(self, input_path, out_dir, task, model, device, overwrite):
        self.calls.append((Path(input_path).name, task, model, device, overwrite))
        if "bad" in Path(input_path).name:
            raise ValueError("cannot read this CT")
        out = Path(out_dir) / f"{case_name(Path(input_path))}.seg.nrrd"
        out.write_text("x")
        return {"segmentation": out}


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
    assert cases == [b, a, series, lone]


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
    assert rows[0]["outputs"] == "one.seg.nrrd"
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


def test_script_arguments_follow_the_script_path(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/opt/Slicer", "--no-main-window", "--python-script",
                                     "/x/batch_segment.py", "--input", "a", "--output", "b"])
    assert batch_segment._script_arguments() == ["--input", "a", "--output", "b"]
