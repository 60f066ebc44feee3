"""``lungseg evaluate`` end to end through ``lungseg_core.cli.main.main`` on small phantom folders."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lungseg_core.cli.main import main
from lungseg_core.io import write_labelmap
from lungseg_core.tests.evaluation.test_evaluate import (
    SHIFT_X,
    SPACING_XYZ,
    make_binary_png_folders,
    make_folders,
    phantom_labels,
    reference_volume,
)


def read_rows(path) -> dict[tuple[str, str, str], dict]:
    with open(path, newline="") as handle:
        return {(r["case"], r["task"], r["label"]): r for r in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_folders(tmp_path_factory.mktemp("cli"))


def test_evaluate_writes_results_and_prints_a_table(folders, tmp_path, capsys):
    pred_dir, ref_dir = folders
    out = tmp_path / "results"
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 0
    assert "Left lung" in printed.out and "Infection (any)" in printed.out
    assert "unmatched predictions (1): lonely" in printed.out
    assert "[1/4]" in printed.err  # progress goes to stderr
    rows = read_rows(out / "metrics.csv")
    # perfect case: Dice 1 for every label of both tasks
    assert all(float(rows[("perfect", t, l)]["dice"]) == 1.0 for t in ("lungs", "infection") for l in ("1", "2", "1+2"))
    # shifted case against a .seg.nrrd reference: HD95 = shift * x spacing
    assert float(rows[("shifted", "lungs", "2")]["hd95_mm"]) == pytest.approx(SHIFT_X * SPACING_XYZ[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unmatched"]["references"] == ["orphan"]
    assert (out / "boxplot.png").stat().st_size > 1000


def test_default_output_folder_task_choice_and_quiet(folders, capsys):
    pred_dir, ref_dir = folders
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--task", "lungs", "-q"])
    printed = capsys.readouterr()
    assert code == 0
    assert "Left lung" not in printed.out and printed.err == ""
    rows = read_rows(pred_dir / "evaluation" / "metrics.csv")
    assert {task for _, task, _ in rows} == {"lungs"}
    assert float(rows[("shifted", "lungs", "1")]["dice"]) == 1.0


def test_binary_png_lung_masks_are_scored_as_both_lungs_with_a_note(tmp_path, capsys):
    pred_dir, ref_dir = make_binary_png_folders(tmp_path, "lungs")
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--task", "lungs"]) == 0
    printed = capsys.readouterr().out
    assert "Lungs (both)" in printed and "Right lung" not in printed
    assert "note: 1 binary reference(s)" in printed
    rows = read_rows(pred_dir / "evaluation" / "metrics.csv")
    assert float(rows[("slice01", "lungs", "1+2")]["hd95_mm"]) == pytest.approx(3.0)  # in pixels


def test_a_failed_case_returns_1_and_the_rest_is_still_written(tmp_path, capsys):
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    lungs, _ = phantom_labels()
    write_labelmap(pred_dir / "good_lungs.nii.gz", reference_volume(), lungs)
    write_labelmap(ref_dir / "good_lungs.nii.gz", reference_volume(), lungs)
    (pred_dir / "bad_lungs.nii.gz").write_bytes(b"corrupt")
    write_labelmap(ref_dir / "bad_lungs.nii.gz", reference_volume(), lungs)
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "-q"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "failed: bad (lungs)" in printed and "Cannot read" in printed
    rows = read_rows(pred_dir / "evaluation" / "metrics.csv")
    assert float(rows[("good", "lungs", "1+2")]["dice"]) == 1.0
    assert not any(case == "bad" for case, _, _ in rows)


def test_no_matching_names_is_a_one_line_error_with_status_2(tmp_path, capsys):
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    write_labelmap(pred_dir / "alpha_lungs.nii.gz", reference_volume(), np.zeros((12, 20, 28)))
    write_labelmap(ref_dir / "beta.nii.gz", reference_volume(), np.zeros((12, 20, 28)))
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("lungseg evaluate: error: No case names match") and err.count("\n") == 1
    assert "Traceback" not in err


def test_required_arguments_and_task_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--pred", "x"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["evaluate", "--pred", "x", "--ref", "y", "--task", "heart"])
    assert "invalid choice" in capsys.readouterr().err


def test_reference_warnings_go_to_stderr_even_when_quiet(tmp_path, capsys):
    pred_dir, ref_dir = tmp_path / "p", tmp_path / "r"
    lungs, _ = phantom_labels()
    for case in ("lung_001", "lung_002"):
        write_labelmap(pred_dir / f"{case}_0000_lungs.nii.gz", reference_volume(), lungs)
        write_labelmap(ref_dir / f"{case}.nii.gz", reference_volume(), np.where(lungs > 0, 3 - lungs, 0))
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--task", "lungs", "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line for the data set's repeated problem
    assert err.startswith("warning (lungs, 2 case(s): lung_001_0000, lung_002_0000): the reference's right lung")
