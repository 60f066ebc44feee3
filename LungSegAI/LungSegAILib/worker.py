"""Heavy work off the GUI thread, with progress and cancel, and no Qt in sight.

Two kinds of task, both polled from the GUI (a ``qt.QTimer`` calls :meth:`poll` every ~100 ms, so all
widget and MRML updates stay on the main thread, as Slicer requires):

- :class:`ThreadTask` runs a Python function ``fn(progress, cancel)`` in a thread: segmentation, where the
  input is a numpy copy made on the main thread and torch releases the GIL while it computes.
- :class:`ProcessTask` runs a command (``lungseg train`` / ``lungseg evaluate``) in a child process and
  streams its output lines: long jobs that must be killable and must not share Slicer's memory.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

ProgressFn = Callable[[float, str], None]


@dataclass
class Event:
    """One thing a task reported: ``kind`` is "progress", "log", "done", "failed" or "cancelled"."""

    kind: str
    fraction: float | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


class _Task:
    def __init__(self) -> None:
        self._events: "queue.Queue[Event]" = queue.Queue()
        self.cancel_event = threading.Event()
        self.result: Any = None
        self.error: BaseException | str | None = None
        self.status = "idle"  # idle -> running -> done | failed | cancelled
        self.started_at: float | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def cancel(self) -> None:
        self.cancel_event.set()

    def poll(self) -> list[Event]:
        """Events reported since the last poll (call from the GUI thread)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(self, timeout: float | None = None) -> bool:
        """Block until finished (batch mode and tests); True when it finished in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running or self.status == "idle":
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


class ThreadTask(_Task):
    """Run ``fn(progress, cancel_event)`` in a daemon thread; its return value becomes :attr:`result`."""

    def __init__(self, fn: Callable[[ProgressFn, threading.Event], Any], name: str = "task") -> None:
        super().__init__()
        self._fn = fn
        self.name = name
        self._thread: threading.Thread | None = None

    def start(self) -> "ThreadTask":
        self.status = "running"
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"LungSegAI-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _progress(self, fraction: float, message: str = "") -> None:
        self._events.put(Event("progress", max(0.0, min(1.0, float(fraction))), message))

    def _run(self) -> None:
        try:
            self.result = self._fn(self._progress, self.cancel_event)
        except BaseException as exc:  # reported to the GUI; never lost in a thread
            self.error = exc
            cancelled = self.cancel_event.is_set() or type(exc).__name__ == "Cancelled"
            status = "cancelled" if cancelled else "failed"
            self._events.put(Event(status, message=_describe(exc)))
            self.status = status  # last: wait() returns only once the final event is queued
            return
        if self.cancel_event.is_set():
            self._events.put(Event("cancelled", message="cancelled"))
            self.status = "cancelled"
        else:
            self._events.put(Event("done", 1.0, "done"))
            self.status = "done"


def _describe(exc: BaseException) -> str:
    one_line = getattr(exc, "one_line", None)
    return one_line() if callable(one_line) else f"{type(exc).__name__}: {exc}"


# "epoch 3/20 train_loss=0.41 val_dice=0.87", "loss: 0.3", "Dice 0.91" ...
# "train loss 0.41", "val_dice=0.87", "val Dice: 0.9": keep the train/val prefix so the curves stay apart
_METRIC = re.compile(r"\b((?:[A-Za-z]+[ _])?[A-Za-z_]*(?:loss|dice))\b\s*[=:]?\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)",
                     re.IGNORECASE)
_EPOCH = re.compile(r"\bepoch\s*[=:]?\s*(\d+)\s*(?:/|of)\s*(\d+)", re.IGNORECASE)
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")


def parse_progress_line(line: str) -> Event:
    """Read loss/Dice values and an epoch counter ("epoch 3/20") or a percentage from a log line."""
    metrics = {name.lower().replace(" ", "_"): float(value) for name, value in _METRIC.findall(line)}
    fraction = None
    epoch = _EPOCH.search(line)
    if epoch and int(epoch.group(2)) > 0:
        fraction = min(1.0, int(epoch.group(1)) / int(epoch.group(2)))
    else:
        percent = _PERCENT.search(line)
        if percent:
            fraction = min(1.0, float(percent.group(1)) / 100.0)
    kind = "progress" if fraction is not None or metrics else "log"
    return Event(kind, fraction, line.rstrip(), metrics)


# Ctrl-C for a child: SIGINT on POSIX; on Windows only CTRL_BREAK reaches a child (in its own process group).
# Each child gets its own process group and signals go to the whole group: Slicer's PythonSlicer is a launcher
# that runs the real interpreter (python-real) as its own child, which a signal to the launcher alone misses.
_INTERRUPT = signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT
_GROUP_OPTIONS = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
                  else {"start_new_session": True})


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """``sig`` to the child and everything it started (POSIX); to the child's group on Windows."""
    try:
        if os.name == "nt":
            process.send_signal(sig)
        else:
            os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):  # ended meanwhile
        pass


class ProcessTask(_Task):
    """Run one command, or several one after another, in child processes; each output line becomes an event.

    Cancel terminates the running process and skips the rest; a failing command stops the chain. With
    ``interrupt_grace_s``, Cancel first interrupts the child as Ctrl-C does and waits that long for it to wrap
    up (``lungseg train`` then packages its best checkpoint) before terminating it.
    """

    def __init__(self, command: Sequence[str] | Sequence[Sequence[str]], name: str = "process",
                 cwd: str | None = None, env: dict[str, str] | None = None,
                 interrupt_grace_s: float | None = None) -> None:
        super().__init__()
        chain = [command] if command and isinstance(command[0], str) else list(command)
        self.commands = [[str(c) for c in cmd] for cmd in chain]
        self.name = name
        self.cwd = cwd
        self.env = env
        self.interrupt_grace_s = interrupt_grace_s
        self.returncode: int | None = None
        self.lines: list[str] = []
        self._process: subprocess.Popen | None = None

    def start(self) -> "ProcessTask":
        self.status = "running"
        self.started_at = time.monotonic()
        threading.Thread(target=self._run_chain, name=f"LungSegAI-{self.name}", daemon=True).start()
        threading.Thread(target=self._watch_cancel, daemon=True).start()
        return self

    def _run_chain(self) -> None:
        for command in self.commands:
            if self.cancel_event.is_set():
                break
            try:
                self._process = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                    cwd=self.cwd, env=self.env, **_GROUP_OPTIONS,
                )
            except OSError as exc:
                self._finish("failed", f"cannot start {command[0]}: {exc}")
                return
            self._events.put(Event("log", message="$ " + " ".join(command)))
            assert self._process.stdout is not None
            for line in self._process.stdout:
                self.lines.append(line.rstrip("\n"))
                self._events.put(parse_progress_line(line))
            self.returncode = self._process.wait()
            if self.returncode != 0 and not self.cancel_event.is_set():
                tail = next((line for line in reversed(self.lines) if line.strip()), "")
                self._finish("failed", f"exit status {self.returncode}: {tail}")
                return
        if self.cancel_event.is_set():
            self._finish("cancelled", "cancelled")
        else:
            self._finish("done", "done")

    def _finish(self, status: str, message: str) -> None:
        if status == "failed":
            self.error = message
        self._events.put(Event(status, 1.0 if status == "done" else None, message))
        self.status = status

    def _watch_cancel(self) -> None:
        self.cancel_event.wait()
        process = self._process
        if process is None or process.poll() is not None:
            return
        if self.interrupt_grace_s:
            _signal_group(process, _INTERRUPT)
            if _ended(process, self.interrupt_grace_s):
                return
        if os.name == "nt":
            _kill_tree_on_windows(process)
            return
        _signal_group(process, signal.SIGTERM)
        if not _ended(process, 10):
            _signal_group(process, signal.SIGKILL)


def _kill_tree_on_windows(process: subprocess.Popen) -> None:
    """Windows has no process-group SIGTERM, and terminate() would end only PythonSlicer.exe, the launcher, and
    leave python-real training: taskkill /T ends the whole tree."""
    subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
    if not _ended(process, 10):
        process.kill()


def _ended(process: subprocess.Popen, timeout: float) -> bool:
    try:
        process.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def lungseg_command(arguments: Sequence[str], python: str | None = None) -> list[str]:
    """The ``lungseg`` CLI run by this (or Slicer's) Python: ``python -m lungseg_core.cli.main ...``."""
    return [python or sys.executable, "-m", "lungseg_core.cli.main", *map(str, arguments)]
