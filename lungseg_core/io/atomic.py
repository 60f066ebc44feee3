"""Atomic output: write to a temporary file in the target folder, then rename over the target.

A crash or an error mid-write never leaves a partial result file behind, and never damages an existing one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def _temporary_affixes(target: Path) -> tuple[str, str]:
    """(prefix, suffix) of the temporaries made for ``target``: hidden, the target's stem, its full suffix."""
    return f".{target.name.split('.')[0]}-", "".join(target.suffixes) or ".tmp"


def remove_stale_temporaries(target: str | os.PathLike) -> None:
    """Delete temporaries of ``target`` that a killed process (kill -9, power cut) left behind.

    Errors and Ctrl-C never leave any (:class:`AtomicGroup` removes them); only names exactly as it makes
    them for this target (prefix, 8 random characters of ``mkstemp``, suffix) are touched.
    """
    target = Path(target)
    prefix, suffix = _temporary_affixes(target)
    for stale in target.parent.glob(f"{glob.escape(prefix)}{'?' * 8}{glob.escape(suffix)}"):
        stale.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only if the block succeeds.

    The temporary name keeps the target's full suffix (e.g. ``.nii.gz``, ``.seg.nrrd``) because writers
    choose the format from it.
    """
    with AtomicGroup() as group:
        yield group.path(target)


def write_atomic(target: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    return write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class AtomicGroup:
    """Several outputs that appear together or not at all.

    ``path(target)`` hands out temporary paths; on a clean exit every one is moved onto its target, and on
    an error every temporary is deleted, so a failed case never leaves some of its files behind.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def path(self, target: str | os.PathLike) -> Path:
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = _temporary_affixes(target)
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
        os.close(fd)
        # mkstemp makes 0600 files; results and models must be readable like any other file the user writes
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        self._pending.append((Path(tmp_name), target))
        return Path(tmp_name)

    def __enter__(self) -> "AtomicGroup":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for tmp, target in self._pending:
                    os.replace(tmp, target)
        finally:
            for tmp, _ in self._pending:
                if tmp.exists():
                    tmp.unlink()
