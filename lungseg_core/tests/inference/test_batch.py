"""Batch resilience: skip finished cases, resume after Ctrl-C, parallel workers, inputs never overwritten."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

import lungseg_core.inference.pipeline as pipeline
from lungseg_core.errors import OutputError
from lungseg_core.inference import segment_many
from lungseg_core.synthetic import make_chest_phantom

FAST = dict(task="lungs", lung_model="threshold", report=False)


@pytest.fixture(scope="module")
def small_ct():
    return make_chest_phantom(shape=(12, 48, 48), spacing=(7.0, 7.0, 24.0), ggo=False, consolidation=False).ct


def write_inputs(folder, ct, names):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{name}.nii.gz"
        if name.startswith("bad"):
            path.write_bytes(b"")  # an empty file: a case that fails
        else:
            sitk.WriteImage(ct.to_sitk(), str(path))
        paths.append(path)
    return paths


def manifest(out):
    return list(csv.DictReader((out / "manifest.csv").open(newline="")))


def hidden_files(out):
    return [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_finished_cases_are_skipped_and_overwrite_redoes_them(tmp_path, small_ct):
    inputs = write_inputs(tmp_path / "in", small_ct, ["a", "b"])
    out = tmp_path / "out"
    segment_many(inputs[:1], out, log=None, **FAST)
    stamp = (out / "a_lungs.nii.gz").stat().st_mtime_ns

    outcomes = segment_many(inputs, out, log=None, **FAST)
    assert [o.status for o in outcomes] == ["skipped", "ok"]
    assert (out / "a_lungs.nii.gz").stat().st_mtime_ns == stamp  # not rewritten
    rows = manifest(out)
    assert rows[0]["status"] == "skipped" and rows[0]["note"] == "already done; --overwrite to redo"
    assert "a_lungs.nii.gz" in rows[0]["outputs"]
    summary = list(csv.DictReader((out / "summary.csv").open(newline="")))
    assert len(summary) == 2  # the skipped case's numbers are still in the batch summary

    outcomes = segment_many(inputs, out, log=None, overwrite=True, **FAST)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert (out / "a_lungs.nii.gz").stat().st_mtime_ns != stamp


def test_partial_outputs_are_not_mistaken_for_a_finished_case(tmp_path, small_ct):
    inputs = write_inputs(tmp_path / "in", small_ct, ["a"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text("someone else's file")
    outcome, = segment_many(inputs, out, log=None, **FAST)
    assert outcome.status == "failed" and "--overwrite" in outcome.error
    assert (out / "a.json").read_text() == "someone else's file"


def test_ctrl_c_mid_write_leaves_no_files_and_the_rerun_resumes(tmp_path, small_ct, monkeypatch):
    inputs = write_inputs(tmp_path / "in", small_ct, ["a", "b", "c"])
    out = tmp_path / "out"
    real_writer = pipeline.write_segmentation
    calls = []

    def interrupted_on_second_case(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the labelmap of case b is already in its temporary file
            raise KeyboardInterrupt
        return real_writer(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "write_segmentation", interrupted_on_second_case)
    with pytest.raises(KeyboardInterrupt):
        segment_many(inputs, out, log=None, **FAST)
    assert [(r["case"], r["status"]) for r in manifest(out)] == [("a", "ok"), ("b", "not run"), ("c", "not run")]
    assert "rerun the same command" in manifest(out)[1]["note"]
    assert hidden_files(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.seg.nrrd", "a_lungs.nii.gz", "manifest.csv"]

    monkeypatch.setattr(pipeline, "write_segmentation", real_writer)
    outcomes = segment_many(inputs, out, log=None, **FAST)
    assert [o.status for o in outcomes] == ["skipped", "ok", "ok"]


def test_stale_temporaries_of_a_killed_run_are_removed_on_rerun(tmp_path, small_ct):
    inputs = write_inputs(tmp_path / "in", small_ct, ["a"])
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a_lungs-k3j_x9q2.nii.gz").write_bytes(b"half a labelmap")  # as AtomicGroup names them
    (out / ".a-notes.txt").write_text("a user's hidden file: not ours")
    segment_many(inputs, out, log=None, **FAST)
    assert hidden_files(out) == [".a-notes.txt"]


def test_duplicate_case_names_fail_instead_of_colliding(tmp_path, small_ct):
    first = write_inputs(tmp_path / "x", small_ct, ["ct"])
    second = write_inputs(tmp_path / "y", small_ct, ["ct"])
    outcomes = segment_many(first + second, tmp_path / "out", log=None, **FAST)
    assert [o.status for o in outcomes] == ["ok", "failed"]
    assert "same case name 'ct'" in outcomes[1].error


def test_outputs_never_replace_an_input(tmp_path):
    from PIL import Image

    from lungseg_core.inference import segment_case

    slice_ = make_chest_phantom(shape=(3, 64, 64), ggo=False, consolidation=False).ct.array[1]
    png = tmp_path / "slice.png"
    Image.fromarray(np.clip((slice_ + 1350) / 1500 * 255, 0, 255).astype(np.uint8)).save(png)
    original = png.read_bytes()
    with pytest.raises(OutputError, match="would replace the input"):  # the report would be slice.png
        segment_case(png, tmp_path, task="lungs", lung_model="threshold", report=True, overwrite=True)
    assert png.read_bytes() == original and sorted(p.name for p in tmp_path.iterdir()) == ["slice.png"]

    manifest_input = tmp_path / "manifest.csv"
    manifest_input.write_text("an input that happens to be called manifest.csv")
    with pytest.raises(OutputError, match="manifest.csv"):
        segment_many([manifest_input], tmp_path, log=None, **FAST)
    assert manifest_input.read_text().startswith("an input")


def test_two_workers_keep_input_order_and_continue_past_failures(tmp_path, small_ct):
    inputs = write_inputs(tmp_path / "in", small_ct, ["a", "bad", "c", "d"])
    out = tmp_path / "out"
    lines = []
    outcomes = segment_many(inputs, out, log=lines.append, workers=2, **FAST)
    assert [(o.case, o.status) for o in outcomes] == [("a", "ok"), ("bad", "failed"), ("c", "ok"), ("d", "ok")]
    assert [r["case"] for r in manifest(out)] == ["a", "bad", "c", "d"]
    assert "empty file" in manifest(out)[1]["error"]
    assert len(lines) == 4 and hidden_files(out) == []
    assert (out / "d_lungs.nii.gz").exists()


def test_ctrl_c_stops_parallel_workers_and_records_finished_cases(tmp_path, small_ct):
    inputs = write_inputs(tmp_path / "in", small_ct, ["a", "b", "c", "d", "e", "f"])
    out = tmp_path / "out"

    def interrupt_after_first_case(line):
        raise KeyboardInterrupt  # Ctrl-C while the parent waits for the workers

    with pytest.raises(KeyboardInterrupt):
        segment_many(inputs, out, log=interrupt_after_first_case, workers=2, **FAST)
    rows = manifest(out)
    assert [r["case"] for r in rows] == ["a", "b", "c", "d", "e", "f"]
    finished = {r["case"] for r in rows if r["status"] == "ok"}
    assert finished and {r["status"] for r in rows} <= {"ok", "not run"}
    assert "not run" in {r["status"] for r in rows}  # queued cases never started
    assert hidden_files(out) == []
    for row in rows:  # a case's files exist completely or not at all
        present = [(out / f"{row['case']}{s}").exists() for s in ("_lungs.nii.gz", ".seg.nrrd", ".json")]
        assert all(present) if row["case"] in finished else not any(present)

    outcomes = segment_many(inputs, out, log=None, **FAST)
    assert {o.case for o in outcomes if o.status == "skipped"} == finished
    assert all(o.status in ("ok", "skipped") for o in outcomes)


def test_a_worker_that_dies_fails_its_case_not_the_batch(tmp_path):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    died = Future()
    died.set_exception(BrokenProcessPool("a child process terminated abruptly"))  # e.g. killed for memory
    outcome = pipeline._worker_outcome(died, tmp_path / "ct.nii.gz")
    assert outcome.status == "failed" and outcome.case == "ct"
    assert "worker process failed" in outcome.error and "fewer --workers" in outcome.error


def test_an_output_path_that_is_a_file_is_an_output_error(tmp_path, small_ct):
    inputs = write_inputs(tmp_path, small_ct, ["ct"])
    with pytest.raises(OutputError, match="is an existing file, not a folder. -o must be a folder"):
        segment_many(inputs, inputs[0], log=None, **FAST)
    with pytest.raises(OutputError, match="Cannot create the output folder"):  # a file in the folder's path
        segment_many(inputs, inputs[0] / "out", log=None, **FAST)


def test_a_case_given_with_its_name_is_written_and_skipped_under_that_name(tmp_path, small_ct):
    from lungseg_core.inference.pipeline import Case

    first, second = (write_inputs(tmp_path / "in" / patient, small_ct, ["ct"])[0] for patient in ("p1", "p2"))
    cases = [Case(first, "p1_ct"), Case(second, "p2_ct")]
    out = tmp_path / "out"
    outcomes = segment_many(cases, out, log=None, **FAST)
    assert [(o.case, o.status) for o in outcomes] == [("p1_ct", "ok"), ("p2_ct", "ok")]
    assert (out / "p1_ct_lungs.nii.gz").exists() and (out / "p2_ct.json").exists()
    outcomes = segment_many(cases, out, log=None, **FAST)
    assert [(o.case, o.status) for o in outcomes] == [("p1_ct", "skipped"), ("p2_ct", "skipped")]
    assert [(r["case"], r["input"]) for r in manifest(out)] == [("p1_ct", str(first)), ("p2_ct", str(second))]
