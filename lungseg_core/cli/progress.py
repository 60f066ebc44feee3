"""Progress lines for long runs: a live bar on a terminal, a few plain lines in logs, nothing with -q."""

from __future__ import annotations

import sys
from typing import Callable, TextIO


def progress_printer(label: str, stream: TextIO | None = None, quiet: bool = False) -> Callable[[float, str], None] | None:
    if quiet:
        return None
    stream = stream or sys.stderr
    interactive = stream.isatty()
    last = {"decile": -1, "message": ""}

    def show(fraction: float, message: str) -> None:
        decile = int(fraction * 10)
        if interactive:
            bar = "#" * int(fraction * 30)
            stream.write(f"\r{label} [{bar:<30}] {fraction * 100:5.1f}% {message[:40]:<40}")
            if fraction >= 1.0:
                stream.write("\n")
            stream.flush()
        elif decile != last["decile"] or message != last["message"]:
            stream.write(f"{label}: {fraction * 100:3.0f}% {message}\n")
            stream.flush()
        last.update(decile=decile, message=message)

    return show
