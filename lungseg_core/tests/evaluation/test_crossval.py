"""k-fold cross-validation: every case scored exactly once by the fold that never trained on it."""

import json
import math
import shutil

import numpy as np
import pytest

from lungseg_core.cli.main import main
from lungseg_core.evaluation.crossval import case_scores, held_out_cases, summarize
from lungseg_core.training.config import config_differences, load_config


def _config(tmp_path, cases=4, **extra):
    config = {
        "name": "cv-tiny", "task": "lungs", "architecture": "unet", "num_classes": 2,
        "architecture_kwargs": {"base_filters": 4, "depth": 2},
        "data": [{"layout": "phantom", "options": {"cases": cases, "shape": [6, 40, 40]}}],
        "slice_spec": {"size": 32, "context": 0}, "epochs": 1, "batch_size": 4, "max_slices_per_case": 2,
        **extra,
    }
    path = tmp_path / "cv.json"
    path.write_text(json.dumps(config))
    return path


def test_case_scores_per_label_and_union():
    ref = np.zeros((1, 4, 4), np.uint8)
    ref[0, :2, :2] = 1  # 4 voxels label 1
    ref[0, 2:, 2:] = 2  # 4 voxels label 2
    pred = ref.copy()
    pred[0, 2:, 2:] = 1  # label 2 predicted as label 1: union perfect, per-label wrong
    row = case_scores(pred, ref, {1: "GGO", 2: "Consolidation"})
    assert row["dice_any"] == 1.0
    assert row["dice_ggo"] == pytest.approx(2 * 4 / (8 + 4))
    assert row["dice_consolidation"] == 0.0
    assert (row["tp_consolidation"], row["fp_consolidation"], row["fn_consolidation"]) == (0, 0, 4)


def test_summary_skips_cases_without_either_mask_and_pools_counts():
    empty = {"fold": 0, "dice_any": math.nan, "tp_any": 0, "fp_any": 0, "fn_any": 0}
    good = {"fold": 0, "dice_any": 1.0, "tp_any": 10, "fp_any": 0, "fn_any": 0}
    half = {"fold": 1, "dice_any": 0.5, "tp_any": 1, "fp_any": 2, "fn_any": 0}
    stats = summarize([empty, good, half])["any"]
    assert stats["scored_cases"] == 2
    assert stats["dice_mean"] == pytest.approx(0.75)
    assert stats["dice_pooled"] == pytest.approx(2 * 11 / (2 * 11 + 2))


def test_folds_partition_the_cases(tmp_path):
    config = load_config(_config(tmp_path, cases=5))
    held_out = [[e.case.name for e in held_out_cases(config, fold, 3)] for fold in range(3)]
    names = [n for fold in held_out for n in fold]
    assert sorted(names) == sorted(set(names)) and len(names) == 5
    assert all(held_out)


def test_crossval_command_trains_scores_and_keeps_finished_folds(tmp_path, capsys):
    config = _config(tmp_path)
    out = tmp_path / "cv"
    assert _rerun(config, out, "--quiet") == 0
    rows = (out / "crossval.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4  # header + every phantom case once
    report = json.loads((out / "crossval.json").read_text())
    assert report["overall"]["cases"] == 4 and set(report["per_fold"]) == {"0", "1"}
    assert "any" not in report["overall"]  # one label: no separate union column
    assert 0.0 <= report["overall"]["lung"]["dice_mean"] <= 1.0
    card = json.loads((out / "fold_1" / "model" / "cv-tiny.json").read_text())
    assert "--fold 1" in card["training"]["command"] and "folds=2" in card["training"]["command"]
    assert "lung: Dice" in capsys.readouterr().out
    stamp = (out / "fold_0" / "summary.json").stat().st_mtime_ns
    assert _rerun(config, out) == 0
    assert (out / "fold_0" / "summary.json").stat().st_mtime_ns == stamp
    assert "already trained" in capsys.readouterr().out


def test_lung_folds_are_scored_as_segment_runs_them_with_the_classical_fusion(tmp_path):
    # one epoch of a 4-filter network is nowhere near the lungs; fused with the classical lungs, as its card
    # asks, the held-out phantoms come out nearly right, which is what `lungseg segment` would give
    out = {}
    for fused in (False, True):
        (tmp_path / str(fused)).mkdir()
        config = _config(tmp_path / str(fused), cases=4, combine_with_classical=fused,
                         data=[{"layout": "phantom", "options": {"cases": 4, "shape": [12, 64, 64]}}])
        assert main(["crossval", str(config), "--folds", "2", "-o", str(tmp_path / f"cv{fused}"),
                     "--device", "cpu", "--quiet"]) == 0
        out[fused] = json.loads((tmp_path / f"cv{fused}" / "crossval.json").read_text())["overall"]["lung"]["dice_mean"]
    assert out[True] > 0.9 and out[True] > out[False] + 0.2


def test_crossval_needs_two_folds(tmp_path, capsys):
    assert main(["crossval", str(_config(tmp_path)), "--folds", "1", "-o", str(tmp_path / "cv")]) == 2
    assert "--folds 2 or more" in capsys.readouterr().err


@pytest.fixture(scope="module")
def two_folds(tmp_path_factory):
    """A finished 2-fold run of the tiny phantom config, trained once; tests copy it."""
    base = tmp_path_factory.mktemp("cv2")
    config = _config(base)
    assert main(["crossval", str(config), "--folds", "2", "-o", str(base / "cv"), "--device", "cpu", "--quiet"]) == 0
    return config, base / "cv"


def _stamps(out):
    """When each finished fold was written: unchanged means kept, not retrained."""
    return {d.name: (d / "summary.json").stat().st_mtime_ns for d in out.glob("fold_*")}


def _copy_run(two_folds, tmp_path):
    config, out = two_folds
    shutil.copytree(out, tmp_path / "cv")
    return config, tmp_path / "cv", _stamps(tmp_path / "cv")


def _rerun(config, out, *extra, folds=2):
    return main(["crossval", str(config), "--folds", str(folds), "-o", str(out), "--device", "cpu", *extra])


def test_crossval_refuses_folds_of_another_number_of_folds(two_folds, tmp_path, capsys):
    # fold_0/fold_1 of a 2-fold split trained on half of the cases the 3-fold test sets hold out
    config, out, stamps = _copy_run(two_folds, tmp_path)
    capsys.readouterr()
    assert _rerun(config, out, folds=3) == 2
    err = capsys.readouterr().err
    assert "fold_0: folds 2 → 3" in err and "fold_1: folds 2 → 3" in err
    assert "use a new -o folder" in err and str(out / "fold_1") in err
    assert not (out / "fold_2").exists()  # nothing trained
    assert _stamps(out) == stamps


def test_crossval_refuses_folds_of_another_config_value(two_folds, tmp_path, capsys):
    config, out, stamps = _copy_run(two_folds, tmp_path)
    capsys.readouterr()
    assert _rerun(config, out, "--set", "slice_spec.size=48", "--set", "lr=0.01") == 2
    err = capsys.readouterr().err
    assert "slice_spec.size 32 → 48" in err and "lr 0.0001 → 0.01" in err
    assert _rerun(config, out, "--epochs", "2") == 2
    assert "epochs 1 → 2" in capsys.readouterr().err
    assert _stamps(out) == stamps


def test_crossval_keeps_folds_of_the_same_effective_config(two_folds, tmp_path, capsys):
    # the same values given on the command line instead of in the file are the same config, and the number of
    # data-loading workers changes no result
    config, out, stamps = _copy_run(two_folds, tmp_path)
    capsys.readouterr()
    assert _rerun(config, out, "--epochs", "1", "--set", "slice_spec.size=32", "--set", "num_workers=1") == 0
    assert capsys.readouterr().out.count("already trained") == 2
    assert _stamps(out) == stamps


def test_crossval_keeps_folds_trained_before_a_config_key_existed(two_folds, tmp_path, capsys):
    """A key added to the config later (at a default that keeps the old behaviour) is no difference."""
    config, out, stamps = _copy_run(two_folds, tmp_path)
    for saved_path in out.glob("fold_*/config.json"):
        saved = json.loads(saved_path.read_text())
        del saved["split_seed"]  # as folds trained before split_seed existed
        saved_path.write_text(json.dumps(saved))
    capsys.readouterr()
    assert _rerun(config, out) == 0
    assert capsys.readouterr().out.count("already trained") == 2
    assert _stamps(out) == stamps


def test_crossval_resumes_an_unfinished_fold_only_with_its_own_config(two_folds, tmp_path, capsys):
    config, out, _ = _copy_run(two_folds, tmp_path)
    shutil.rmtree(out / "fold_0")
    (out / "fold_1" / "summary.json").unlink()  # interrupted: only checkpoints/last.pt is left
    capsys.readouterr()
    assert _rerun(config, out, "--set", "lr=0.01") == 2
    err = capsys.readouterr().err
    assert "fold_1: lr 0.0001 → 0.01" in err and "fold_0" not in err
    assert not (out / "fold_0").exists()  # refused before training anything
    assert _rerun(config, out) == 0
    printed = capsys.readouterr().out
    assert "fold 1/2: resuming" in printed and "fold 0/2: training" in printed
    assert (out / "fold_1" / "summary.json").exists()


def test_config_differences_name_dotted_keys_old_and_new():
    saved = {"folds": 2, "slice_spec": {"size": 64, "context": 1}, "data": [{"root": "a"}], "lr": 1e-4}
    wanted = {"folds": 3, "slice_spec": {"size": 64, "context": 1}, "data": [{"root": "b"}], "lr": 1e-4, "new": 1}
    assert config_differences(saved, wanted) == ["folds 2 → 3", 'data.0.root "a" → "b"', "new (absent) → 1"]
    assert config_differences(saved, json.loads(json.dumps(saved))) == []


@pytest.mark.parametrize("epoch", [1, 2], ids=["in-the-first-epoch", "after-an-epoch"])
def test_ctrl_c_stops_the_crossval_and_the_fold_is_resumed_not_scored(tmp_path, capsys, monkeypatch, epoch):
    """Ctrl-C in fold 0 ends the command (no fold 1 started); the rerun resumes fold 0 (or retrains it when
    nothing was saved) instead of keeping it as finished and scoring a half-trained model."""
    from lungseg_core.tests.training.test_trainer import _interrupt_in_epoch

    config, out = _config(tmp_path), tmp_path / "cv"
    _interrupt_in_epoch(monkeypatch, epoch)
    assert _rerun(config, out, "--epochs", "2") == 130
    assert json.loads((out / "fold_0" / "summary.json").read_text())["interrupted"] is True
    assert not (out / "fold_1").exists() and not (out / "crossval.json").exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert _rerun(config, out, "--epochs", "2") == 0
    printed = capsys.readouterr().out
    assert f"fold 0/2: {'resuming' if epoch == 2 else 'training'}" in printed and "already trained" not in printed
    summary = json.loads((out / "fold_0" / "summary.json").read_text())
    assert summary["interrupted"] is False and summary["epochs_run"] == 2


def test_only_fold_trains_and_reports_that_fold_and_a_full_run_reuses_it(tmp_path, capsys):
    """Folds spread over machines into one folder: each run trains its own fold and writes its own report, never
    the full one; a last run without --only-fold keeps them and reports every fold."""
    config, out = _config(tmp_path), tmp_path / "cv"
    assert _rerun(config, out, "--only-fold", "1") == 0
    assert not (out / "fold_0").exists() and not (out / "crossval.json").exists()
    partial = json.loads((out / "crossval_folds_1.json").read_text())
    assert set(partial["per_fold"]) == {"1"}
    held_out = {e.case.name for e in held_out_cases(load_config(config), 1, 2)}
    rows = (out / "crossval_folds_1.csv").read_text().strip().splitlines()[1:]
    assert {row.split(",")[1] for row in rows} == held_out
    assert "folds 1 of 2 only" in capsys.readouterr().out
    stamp = (out / "fold_1" / "summary.json").stat().st_mtime_ns
    assert _rerun(config, out) == 0
    assert (out / "fold_1" / "summary.json").stat().st_mtime_ns == stamp
    assert "fold 1: already trained" in capsys.readouterr().out
    report = json.loads((out / "crossval.json").read_text())
    assert set(report["per_fold"]) == {"0", "1"} and report["overall"]["cases"] == 4
    assert report["per_fold"]["1"] == partial["per_fold"]["1"]
    assert (out / "crossval_folds_1.json").exists()


def test_only_fold_outside_the_folds_is_refused_before_training(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "cv"
    assert _rerun(config, out, "--only-fold", "0", "--only-fold", "2") == 2
    err = capsys.readouterr().err
    assert "--only-fold 2 is not a fold of --folds 2" in err and "from 0 to 1" in err
    assert not out.exists()
