"""Contrast enhancement from the seed method: CLAHE and histogram equalisation, per 2D slice.

Both work on float slices already mapped to [0, 1] (see ``intensity.to_unit_range``) and return float32
in [0, 1], so they can be switched on or off without changing anything else in the pipeline.
"""

from __future__ import annotations

import numpy as np
from skimage import exposure

ENHANCE_METHODS = ("none", "clahe", "histeq")


def _check_slice(unit_slice: np.ndarray) -> np.ndarray:
    unit_slice = np.asarray(unit_slice, dtype=np.float32)
    if unit_slice.ndim != 2:
        raise ValueError(f"expected a 2D slice, got shape {unit_slice.shape}")
    return unit_slice


def clahe(unit_slice: np.ndarray, clip_limit: float = 0.01, kernel_size: int | None = None) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (tiles of 1/8 of the image by default)."""
    unit_slice = _check_slice(unit_slice)
    if np.ptp(unit_slice) == 0:  # constant slice (e.g. all air): nothing to equalise
        return unit_slice.copy()
    out = exposure.equalize_adapthist(np.clip(unit_slice, 0.0, 1.0), kernel_size=kernel_size, clip_limit=clip_limit)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def equalize_histogram(unit_slice: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Global histogram equalisation; with ``mask`` the histogram is taken inside it (e.g. the body)."""
    unit_slice = _check_slice(unit_slice)
    if mask is not None and not np.any(mask):
        mask = None
    values = unit_slice if mask is None else unit_slice[np.asarray(mask, bool)]
    if np.ptp(values) == 0:
        return unit_slice.copy()
    out = exposure.equalize_hist(unit_slice, nbins=256, mask=mask)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def enhance_slice(unit_slice: np.ndarray, method: str) -> np.ndarray:
    """One slice through ``method`` ("none", "clahe" or "histeq")."""
    if method == "none":
        return np.asarray(unit_slice, dtype=np.float32)
    if method == "clahe":
        return clahe(unit_slice)
    if method == "histeq":
        return equalize_histogram(unit_slice)
    raise ValueError(f"enhance method must be one of {ENHANCE_METHODS}, got {method!r}")


def enhance_slices(stack: np.ndarray, method: str = "none") -> np.ndarray:
    """Apply ``method`` to every slice of a (z, y, x) float stack in [0, 1]; returns float32."""
    if method not in ENHANCE_METHODS:
        raise ValueError(f"enhance method must be one of {ENHANCE_METHODS}, got {method!r}")
    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim != 3:
        raise ValueError(f"expected a (z, y, x) stack, got shape {stack.shape}")
    if method == "none":
        return stack
    return np.stack([enhance_slice(s, method) for s in stack]).astype(np.float32, copy=False)
