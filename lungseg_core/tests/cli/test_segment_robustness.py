"""`lungseg segment` under faults: each bad input or model gives one clear line and no partial output;
Ctrl-C, resume, --workers and a missing GPU behave as docs/robustness.md says."""

from __future__ import annotations

import csv
import json

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

import lungseg_core.inference.pipeline as pipeline
from lungseg_core.cli.main import main
from lungseg_core.models import zoo
from lungseg_core.synthetic import make_chest_phantom
from lungseg_core.tests.cli.test_segment_cli import run_cli
from lungseg_core.tests.models.test_zoo import save_tiny


@pytest.fixture(scope="module")
def small():
    return make_chest_phantom(shape=(12, 48, 48), spacing=(7.0, 7.0, 24.0), ggo=False, consolidation=False)


def write_image(path, image):
    sitk.WriteImage(image, str(path))
    return path


def corrupt_model(tmp_path):
    """A model whose weights file is garbage but whose card's SHA-256 matches it: the read itself fails."""
    card_path, _ = save_tiny(tmp_path / "models")
    weights = tmp_path / "models" / "tiny.safetensors"
    weights.write_bytes(b"not a safetensors file" * 10)
    card = json.loads(card_path.read_text())
    card["sha256"] = zoo.sha256_file(weights)
    card_path.write_text(json.dumps(card))
    return card_path


def fault_cases(tmp_path, small):
    ct = small.ct
    good = write_image(tmp_path / "good.nii.gz", ct.to_sitk())
    inf = ct.array.astype(np.float32)
    inf[2, 10, 10] = np.inf
    time_series = sitk.JoinSeries([ct.to_sitk(), ct.to_sitk()])
    unit = ((ct.array - ct.array.min()) / np.ptp(ct.array)).astype(np.float32)
    sheared = np.diag([7.0, 7.0, 24.0, 1.0])
    sheared[0, 1] = 3.0
    nibabel.save(nibabel.Nifti1Image(ct.array.T.astype(np.int16), sheared), str(tmp_path / "sheared.nii.gz"))
    return {
        "inf voxels": ([write_image(tmp_path / "inf.nii.gz", sitk.GetImageFromArray(inf))], [], "infinite"),
        "4d": ([write_image(tmp_path / "four.nrrd", time_series)], [], "2 time points"),
        "float 0-1": ([write_image(tmp_path / "unit.nii.gz", sitk.GetImageFromArray(unit))], [], "normalised to 0..1"),
        "sheared": ([tmp_path / "sheared.nii.gz"], [], "sheared"),
    }


@pytest.mark.parametrize("case", ["inf voxels", "4d", "float 0-1", "sheared"])
def test_fault_gives_one_line_error_and_no_partial_output(tmp_path, capsys, small, case):
    inputs, extra, expected = fault_cases(tmp_path, small)[case]
    out = tmp_path / "out"
    status, _, err = run_cli(capsys, "segment", *inputs, "-o", out, "--task", "lungs", *extra, "-q")
    assert status == 1
    error_lines = [line for line in err.strip().splitlines() if "error" in line]
    assert len(error_lines) == 1 and expected in error_lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv"]


def faulty_model(tmp_path, fault):
    """A model package with ``fault``: its weights file gone, altered after export, or unreadable."""
    if fault == "corrupt":
        return corrupt_model(tmp_path)
    card_path, _ = save_tiny(tmp_path / "models")
    weights = tmp_path / "models" / "tiny.safetensors"
    if fault == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    return card_path


@pytest.mark.parametrize("fault, expected", [("missing", "is missing"), ("altered", "SHA-256"), ("corrupt", "corrupt")])
def test_model_fault_stops_the_batch_before_any_case(tmp_path, capsys, small, fault, expected):
    paths = [write_image(tmp_path / f"{name}.nii.gz", small.ct.to_sitk()) for name in ("a", "b")]
    status, _, err = run_cli(capsys, "segment", *paths, "-o", tmp_path / "out", "--lung-model",
                             faulty_model(tmp_path, fault), "--task", "lungs", "-q")
    assert status == 2 and expected in err and err.count("\n") == 1, err  # once, not once per case
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_refused_in_one_line(tmp_path, capsys, small):
    path = write_image(tmp_path / "ex.nii.gz", small.ct.to_sitk())
    original = path.read_bytes()
    status, _, err = run_cli(capsys, "segment", path, "-o", path, "--model", "threshold", "-q")
    assert status == 2 and "-o must be a folder" in err and err.count("\n") == 1, err
    assert "Traceback" not in err and path.read_bytes() == original


def test_too_large_for_memory_is_refused_with_the_size_needed(tmp_path, capsys, small, monkeypatch):
    path = write_image(tmp_path / "big.nii.gz", small.ct.to_sitk())
    monkeypatch.setenv("LUNGSEG_MAX_MEMORY_GB", "0.0003")  # about 0.3 MB: the 27 k voxel phantom needs ~0.5 MB
    status, _, err = run_cli(capsys, "segment", path, "-o", tmp_path / "out", "--model", "threshold", "-q")
    assert status == 1
    assert "too large for this machine" in err and "48x48x12 voxels need about" in err and "GiB" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.csv"]


def test_cuda_without_gpu_fails_before_any_case(tmp_path, capsys, small, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    card_path, _ = save_tiny(tmp_path / "models")
    path = write_image(tmp_path / "c.nii.gz", small.ct.to_sitk())
    status, _, err = run_cli(capsys, "segment", path, "-o", tmp_path / "out", "--lung-model", card_path,
                             "--task", "lungs", "--device", "cuda", "-q")
    assert status == 2 and "--device cpu" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    # the classical method never uses a GPU, so a cuda request does not stop it
    status, _, err = run_cli(capsys, "segment", path, "-o", tmp_path / "out", "--model", "threshold",
                             "--task", "lungs", "--device", "cuda", "--no-report", "-q")
    assert status == 0, err


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, capsys, small, monkeypatch):
    paths = [write_image(tmp_path / f"{name}.nii.gz", small.ct.to_sitk()) for name in ("a", "b")]
    real_segment_case = pipeline.segment_case

    def ctrl_c_on_b(path, *args, **kwargs):
        if "b" in str(path.name):
            raise KeyboardInterrupt
        return real_segment_case(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "segment_case", ctrl_c_on_b)
    argv = ["segment", *paths, "-o", tmp_path / "out", "--model", "threshold", "--task", "lungs", "--no-report", "-q"]
    status, _, err = run_cli(capsys, *argv)
    assert status == 130 and "Run the same command again to resume" in err
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open(newline="")))
    assert [r["status"] for r in rows] == ["ok", "not run"]

    monkeypatch.setattr(pipeline, "segment_case", real_segment_case)
    status, out, _ = run_cli(capsys, *argv[:-1])
    assert status == 0 and "1 of 2 case(s) segmented, 1 skipped (already done)" in out


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_workers_must_be_a_positive_number(tmp_path, capsys, workers):
    with pytest.raises(SystemExit) as info:
        main(["segment", str(tmp_path / "x.nii.gz"), "-o", str(tmp_path / "out"), "--workers", workers])
    assert info.value.code == 2 and "at least 1" in capsys.readouterr().err
