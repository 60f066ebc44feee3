"""Background tasks: progress, results, errors and cancel, for threads and child processes."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from LungSegAILib import worker


def _drain(task, timeout=20):
    assert task.wait(timeout), "task did not finish"
    return task.poll()


def test_thread_task_reports_progress_and_result():
    def job(progress, cancel):
        for i in range(3):
            progress((i + 1) / 3, f"step {i + 1}")
        return 42

    task = worker.ThreadTask(job).start()
    events = _drain(task)
    assert task.status == "done" and task.result == 42
    assert [e.kind for e in events] == ["progress", "progress", "progress", "done"]
    assert [round(e.fraction, 2) for e in events[:3]] == [0.33, 0.67, 1.0]
    assert events[1].message == "step 2"


def test_thread_task_error_is_reported_not_lost():
    from lungseg_core.errors import InputError

    def job(progress, cancel):
        raise InputError("CT has 2 slices", "give a full chest CT")

    task = worker.ThreadTask(job).start()
    events = _drain(task)
    assert task.status == "failed" and isinstance(task.error, InputError)
    assert events[-1].kind == "failed" and events[-1].message == "CT has 2 slices. give a full chest CT."


def test_thread_task_cancel_stops_the_job():
    started = threading.Event()

    def job(progress, cancel):
        started.set()
        while not cancel.wait(0.01):
            pass
        raise RuntimeError("stopped")

    task = worker.ThreadTask(job).start()
    assert started.wait(5)
    assert task.running
    task.cancel()
    events = _drain(task)
    assert task.status == "cancelled" and events[-1].kind == "cancelled"


def test_parse_progress_line_reads_epochs_losses_and_dice():
    event = worker.parse_progress_line("epoch 3/10 train_loss=0.4120 val_loss: 0.38 val_dice=0.912")
    assert event.kind == "progress" and event.fraction == pytest.approx(0.3)
    assert event.metrics == {"train_loss": 0.412, "val_loss": 0.38, "val_dice": 0.912}
    assert worker.parse_progress_line("[2/4] case7: ok 50%").fraction == pytest.approx(0.5)
    plain = worker.parse_progress_line("loading data")
    assert plain.kind == "log" and plain.fraction is None and not plain.metrics


def test_process_task_streams_lines_and_metrics():
    code = "import sys\nfor e in (1, 2):\n    print(f'epoch {e}/2 loss={1/e:.2f} dice={0.4*e:.2f}', flush=True)"
    task = worker.ProcessTask([sys.executable, "-c", code]).start()
    events = _drain(task)
    assert task.status == "done" and task.returncode == 0
    metrics = [e.metrics for e in events if e.metrics]
    assert metrics == [{"loss": 1.0, "dice": 0.4}, {"loss": 0.5, "dice": 0.8}]
    assert events[-1].kind == "done"


def test_process_chain_stops_at_the_first_failure():
    fail = [sys.executable, "-c", "import sys; print('bad input'); sys.exit(3)"]
    never = [sys.executable, "-c", "print('should not run')"]
    task = worker.ProcessTask([fail, never]).start()
    events = _drain(task)
    assert task.status == "failed" and "exit status 3" in task.error and "bad input" in task.error
    assert not any("should not run" in e.message for e in events)


def test_process_task_cancel_terminates_the_child():
    task = worker.ProcessTask([sys.executable, "-c", "import time; print('go', flush=True); time.sleep(60)"]).start()
    for _ in range(200):
        if task.lines:
            break
        threading.Event().wait(0.02)
    task.cancel()
    events = _drain(task, timeout=15)
    assert task.status == "cancelled" and events[-1].kind == "cancelled"


def _started(task) -> None:
    for _ in range(250):
        if task.lines:
            return
        threading.Event().wait(0.02)
    raise AssertionError("child printed nothing")


def test_process_task_interrupt_lets_the_child_wrap_up():
    """Stop in the training panel: the child gets Ctrl-C (SIGINT), so `lungseg train` can package its best epoch."""
    code = ("import time\ntry:\n    print('go', flush=True); time.sleep(60)\n"
            "except KeyboardInterrupt:\n    print('packaged the best checkpoint', flush=True); raise SystemExit(130)")
    task = worker.ProcessTask([sys.executable, "-c", code], interrupt_grace_s=20).start()
    _started(task)
    task.cancel()
    events = _drain(task, timeout=15)
    assert task.status == "cancelled" and task.returncode == 130
    assert any(e.message == "packaged the best checkpoint" for e in events)


def test_process_task_terminates_a_child_that_ignores_the_interrupt():
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('go', flush=True)\ntime.sleep(60)"
    task = worker.ProcessTask([sys.executable, "-c", code], interrupt_grace_s=0.5).start()
    _started(task)
    task.cancel()
    _drain(task, timeout=15)
    assert task.status == "cancelled" and task.returncode != 0


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
def test_stop_reaches_the_real_interpreter_behind_a_launcher(tmp_path):
    """Slicer's PythonSlicer is a launcher that runs python-real as its child and forwards no signal: Stop must
    interrupt the grandchild (the training) too, so it packages its best epoch, and leave nothing running."""
    marker = tmp_path / "packaged"
    real = ("import sys, time\ntry:\n    print('go', flush=True); time.sleep(60)\n"
            f"except KeyboardInterrupt:\n    open({str(marker)!r}, 'w').write('yes'); sys.exit(130)")
    # a handler that does nothing (not SIG_IGN, which the child would inherit): the launcher forwards nothing
    launcher = ("import signal, subprocess, sys\nsignal.signal(signal.SIGINT, lambda *args: None)\n"
                f"sys.exit(subprocess.call([sys.executable, '-c', {real!r}]))")
    task = worker.ProcessTask([sys.executable, "-c", launcher], interrupt_grace_s=20).start()
    _started(task)
    task.cancel()
    _drain(task, timeout=15)
    assert task.status == "cancelled" and task.returncode == 130
    assert marker.read_text() == "yes"


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
def test_stop_terminates_the_real_interpreter_behind_a_launcher_when_it_ignores_the_interrupt():
    """The fallback after the grace period ends the whole group: no trainer is left running as an orphan,
    still writing into the run folder."""
    real = "import os, signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint(os.getpid(), flush=True)\ntime.sleep(60)"
    # a launcher that forwards nothing and dies on SIGTERM without ending its child (as a C++ launcher does)
    launcher = ("import signal, subprocess, sys\nsignal.signal(signal.SIGINT, lambda *args: None)\n"
                f"sys.exit(subprocess.call([sys.executable, '-c', {real!r}]))")
    task = worker.ProcessTask([sys.executable, "-c", launcher], interrupt_grace_s=0.5).start()
    _started(task)
    task.cancel()
    _drain(task, timeout=15)  # the orphan would keep the output pipe open: the task would not end
    assert task.status == "cancelled"
    stat = f"/proc/{int(task.lines[0])}/stat"
    assert not os.path.exists(stat) or open(stat).read().split(")")[1].split()[0] == "Z"  # gone, or dead unreaped


def test_lungseg_command_uses_the_given_python():
    assert worker.lungseg_command(["segment", "a"], python="/s/PythonSlicer") == [
        "/s/PythonSlicer", "-m", "lungseg_core.cli.main", "segment", "a"]


def test_trainer_epoch_lines_keep_train_and_validation_apart():
    from LungSegAILib.worker import parse_progress_line

    # the exact format lungseg_core.training.trainer prints each epoch
    event = parse_progress_line("epoch 3/20: train loss 0.4123, val loss 0.3000, val Dice 0.8123, lr 5.00e-04, 12.3 s *best*")
    assert event.fraction == pytest.approx(0.15)
    assert event.metrics == {"train_loss": 0.4123, "val_loss": 0.3, "val_dice": 0.8123}
