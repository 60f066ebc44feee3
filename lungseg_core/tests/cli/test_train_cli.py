"""``lungseg train`` end to end through the command-line entry point."""

import json
import signal

from lungseg_core.cli.main import main


def _config(tmp_path):
    config = {
        "name": "cli-tiny", "task": "lungs", "architecture": "unet", "num_classes": 3,
        "architecture_kwargs": {"base_filters": 4, "depth": 2},
        "data": [{"layout": "phantom", "options": {"cases": 2, "shape": [8, 48, 48]}}],
        "slice_spec": {"size": 32, "context": 1}, "epochs": 3, "batch_size": 2, "max_slices_per_case": 2,
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(config))
    return path


def test_train_then_resume_from_the_command_line(tmp_path, capsys):
    config = _config(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), "-o", str(run), "--epochs", "1", "--device", "cpu", "--set", "lr=0.001"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and out.count("model package:") == 1  # the trainer's last log line, not repeated
    card = json.loads((run / "model" / "cli-tiny.json").read_text())
    assert card["training"]["config"]["lr"] == 0.001
    assert "--set lr=0.001" in card["training"]["command"]
    # the resume repeats the run's --set (another lr would be another run) and raises --epochs
    assert main(["train", str(config), "-o", str(run), "--resume", "--epochs", "2", "--set", "lr=0.001", "--quiet"]) == 0
    assert capsys.readouterr().out == f"model package: {run / 'model' / 'cli-tiny.json'}\n"  # --quiet: that line only
    assert (run / "log.csv").read_text().count("\n") == 3  # header + epochs 1 and 2
    tuned = tmp_path / "tuned"
    package = str(run / "model" / "cli-tiny.json")
    assert main(["train", str(config), "-o", str(tuned), "--epochs", "1", "--quiet", "--init-weights", package]) == 0
    card = json.loads((tuned / "model" / "cli-tiny.json").read_text())
    assert card["training"]["fine_tuned_from"] == package and f"--init-weights {package}" in card["training"]["command"]


def test_an_interrupted_run_exits_130_with_its_best_epoch_packaged(tmp_path, capsys, monkeypatch):
    from lungseg_core.tests.training.test_trainer import _interrupt_in_epoch

    _interrupt_in_epoch(monkeypatch, 2)
    run = tmp_path / "run"
    assert main(["train", str(_config(tmp_path)), "-o", str(run), "--device", "cpu"]) == 130
    captured = capsys.readouterr()
    assert "model package:" in captured.out and "resume" in captured.err
    assert (run / "model" / "cli-tiny.json").exists()


def test_an_interrupt_in_the_first_epoch_does_not_advise_a_resume(tmp_path, capsys, monkeypatch):
    from lungseg_core.tests.training.test_trainer import _interrupt_in_epoch

    _interrupt_in_epoch(monkeypatch, 1)
    assert main(["train", str(_config(tmp_path)), "-o", str(tmp_path / "run"), "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert "nothing saved" in err and "resume with" not in err
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_stop_works_when_the_parent_ignores_sigint(tmp_path, capsys, monkeypatch):
    """A parent started with & or nohup passes SIGINT = ignored on: `lungseg train` must make it a stop again."""
    from lungseg_core.tests.training.test_trainer import _interrupt_in_epoch

    _interrupt_in_epoch(monkeypatch, 2)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["train", str(_config(tmp_path)), "-o", str(tmp_path / "run"), "--device", "cpu", "--quiet"]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "run" / "model" / "cli-tiny.json").exists()


def test_user_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err and err.count("\n") == 1
    config = _config(tmp_path)
    assert main(["train", str(config), "-o", str(tmp_path / "r"), "--set", "optimizer=rmsprop"]) == 2
    assert "use one of: adam, adamw, sgd" in capsys.readouterr().err
    assert main(["train", str(config), "-o", str(tmp_path / "r2"), "--set", "epochs"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
