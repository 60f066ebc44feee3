"""Thick-slice CTs made from thin-slice ones, so models trained on 1-2.5 mm scans also work on 5-10 mm scans.

A thick reconstruction averages the tissue across the slab: at the lung bases a 10 mm slice mixes aerated
lung with the liver dome and looks like ground glass or consolidation, which a model that has only seen thin
slices takes for diseased lung. Averaging groups of ``factor`` neighbouring slices reproduces that partial
volume effect with labels that stay right: a voxel keeps a label where that label covers at least half of
the averaged voxels.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lungseg_core.io.volume import Volume


def slab_factor(slice_mm: float, thickness_mm: float) -> int:
    """How many slices of ``slice_mm`` make a slab of about ``thickness_mm`` (at least 1)."""
    return max(1, int(round(thickness_mm / max(slice_mm, 1e-6))))


def thicken_slices(ct: Volume, labels: np.ndarray, factor: int) -> tuple[Volume, np.ndarray]:
    """(thick CT, its labels): every ``factor`` consecutive axial slices averaged into one (a trailing partial
    group is dropped). Expects axial storage (numpy axis 0 is the slice axis), as the training readers give."""
    factor = int(factor)
    count = ct.shape[0] // factor
    if factor <= 1 or count < 1:
        return ct, labels
    groups = ct.array[: count * factor].astype(np.float32).reshape(count, factor, *ct.shape[1:])
    thick = groups.mean(axis=1)
    if np.issubdtype(ct.array.dtype, np.integer):
        thick = np.rint(thick)
    slab_axis = ct.direction[:, 2] * ct.spacing[2]
    origin = np.asarray(ct.origin) + slab_axis * (factor - 1) / 2  # centre of the first slab
    spacing = (ct.spacing[0], ct.spacing[1], ct.spacing[2] * factor)
    thick_ct = replace(ct, array=thick.astype(ct.array.dtype), spacing=spacing, origin=tuple(origin),
                       metadata={**ct.metadata, "thick_slices": factor})
    return thick_ct, thicken_labels(labels, factor)


def thicken_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """Labels of the slabs of :func:`thicken_slices`: the label covering at least half of a slab voxel's
    ``factor`` voxels (ties between two labels: the one met first), else 0."""
    labels = np.asarray(labels)
    count = labels.shape[0] // factor
    groups = labels[: count * factor].reshape(count, factor, *labels.shape[1:])
    thick = np.zeros(groups.shape[:1] + groups.shape[2:], np.uint8)
    best_share = np.zeros(thick.shape, np.float32)
    for value in np.unique(groups):
        if value == 0:
            continue
        share = (groups == value).mean(axis=1, dtype=np.float32)
        wins = (share >= 0.5) & (share > best_share)
        thick[wins], best_share[wins] = value, share[wins]
    return thick
