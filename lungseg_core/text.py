"""Small helpers for one-line, user-facing messages."""

from __future__ import annotations

from typing import Iterable


def shown_list(items: Iterable, limit: int = 5) -> str:
    """``a, b, c and 4 more``: the first ``limit`` items of a list for a one-line message, and how many more.

    Items are written with ``str`` (values as ``3, 4``, not the list repr ``[3, 4]``) so that every note and error
    names things the same way."""
    items = [str(item) for item in items]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
