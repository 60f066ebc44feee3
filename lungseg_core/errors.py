"""One exception type for every problem a user can fix.

Each error says what is wrong and what to do, on one line, so the CLI, the Slicer module and the batch
script can show it verbatim without a traceback.
"""

from __future__ import annotations


class LungSegError(Exception):
    """A user-facing error: ``problem`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem.rstrip(".")
        self.fix = fix.rstrip(".")
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.problem}. {self.fix}." if self.fix else f"{self.problem}."


class InputError(LungSegError):
    """The input image cannot be used (unreadable, wrong kind, wrong dimensionality, bad values)."""


class ModelError(LungSegError):
    """A model cannot be found, loaded or verified."""


class OutputError(LungSegError):
    """Results cannot be written (existing outputs, unwritable folder)."""
