"""Body and lung cropping, and the seed method's removal of non-informative slices.

The body is found by a threshold plus the large connected components: fast (one pass of
``scipy.ndimage.label``), and it drops the scanner table, padding outside the field of view (-2048/-3024 HU,
below any threshold) and air.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lungseg_core.io.volume import Volume

BODY_THRESHOLD_HU = -500.0  # soft tissue and bone, not air or FOV padding
BODY_MIN_RELATIVE_SIZE = 0.05  # components smaller than 5% of the largest are table or debris
BODY_THRESHOLD_DISPLAY = 100.0  # 0-255 lung-window slices: about -760 HU, above air (~60) and padding (0)

Box = tuple[slice, slice, slice]


def _threshold(volume: Volume) -> float:
    return BODY_THRESHOLD_DISPLAY if volume.intensity == "display" else BODY_THRESHOLD_HU


def body_component(volume: Volume) -> np.ndarray:
    """3D components above the body threshold at least ``BODY_MIN_RELATIVE_SIZE`` of the largest.

    Lungs inside are holes, not filled. Keeping large secondary components matters for exported slices
    already cropped to the lungs (COVID-19 8-bit slices): there the chest wall is cut into several pieces
    and the largest piece alone would crop lesions away. The scanner table (about 2% of the body on LIDC
    scans) and small debris are dropped.
    """
    foreground = np.asarray(volume.array) > _threshold(volume)
    labels, count = ndimage.label(foreground)
    if count <= 1:
        return foreground
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= BODY_MIN_RELATIVE_SIZE * sizes.max()
    keep[0] = False
    return keep[labels]


def body_mask(volume: Volume) -> np.ndarray:
    """Boolean body mask (z, y, x): largest component above the threshold, holes (lungs) filled per slice."""
    mask = body_component(volume)
    for z in range(mask.shape[0]):
        if mask[z].any():
            mask[z] = ndimage.binary_fill_holes(mask[z])
    return mask


def bounding_box(mask: np.ndarray, margin_vox: int | Sequence[int] = 0) -> Box:
    """(z, y, x) slices of the smallest box holding ``mask``, grown by ``margin_vox`` and kept in bounds.

    Raises ``ValueError`` for an empty mask (callers choose their own fallback).
    """
    mask = np.asarray(mask)
    margins = np.broadcast_to(np.asarray(margin_vox, dtype=int), (mask.ndim,))
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        if present.size == 0:
            raise ValueError("bounding_box of an empty mask")
        start = max(0, int(present[0]) - int(margins[axis]))
        stop = min(mask.shape[axis], int(present[-1]) + 1 + int(margins[axis]))
        box.append(slice(start, stop))
    return tuple(box)


def margin_mm_to_vox(volume: Volume, margin_mm: float) -> tuple[int, int, int]:
    """A margin in mm as whole voxels along (z, y, x)."""
    spacing_zyx = volume.spacing[::-1]
    return tuple(int(np.ceil(margin_mm / s)) if s > 0 else 0 for s in spacing_zyx)


def crop_volume(volume: Volume, box: Box) -> Volume:
    """The sub-volume inside ``box`` with its origin moved so every voxel keeps its LPS position."""
    corner_zyx = np.array([[s.start or 0 for s in box]], dtype=float)
    origin = volume.zyx_to_lps(corner_zyx)[0]
    cropped = Volume(
        np.ascontiguousarray(volume.array[box]), volume.spacing, tuple(origin), volume.direction,
        intensity=volume.intensity, is_2d=volume.is_2d, name=volume.name, metadata=dict(volume.metadata),
    )
    return cropped


def crop_to_body(volume: Volume, margin_mm: float = 5.0) -> tuple[Volume, Box]:
    """Crop to the body's bounding box (+ ``margin_mm``); the full volume when no body is found."""
    try:
        box = bounding_box(body_component(volume), margin_mm_to_vox(volume, margin_mm))
    except ValueError:
        box = tuple(slice(0, n) for n in volume.shape)
    return crop_volume(volume, box), box


# seed 5's lung crop: the lungs' box grown by this much, in training and at inference alike
LUNG_CROP_MARGIN_MM = 10.0


def lung_bounding_box(lungs: np.ndarray, volume: Volume, margin_mm: float = LUNG_CROP_MARGIN_MM) -> Box:
    """Box around the lungs (any label > 0) grown by ``margin_mm`` (seed method: crop to the lungs).

    Raises ``ValueError`` when ``lungs`` is empty.
    """
    lungs = np.asarray(lungs)
    if lungs.shape != volume.shape:
        raise ValueError(f"lung mask shape {lungs.shape} differs from volume shape {volume.shape}")
    return bounding_box(lungs > 0, margin_mm_to_vox(volume, margin_mm))


def informative_slices(mask: np.ndarray, min_fraction: float = 0.0) -> np.ndarray:
    """Bool per z: True where the slice's foreground fraction exceeds ``min_fraction``.

    The seed method dropped slices with no lung (or no foreground) from training; ``min_fraction > 0``
    also drops slices that only graze the structure.
    """
    mask = np.asarray(mask) > 0
    if mask.ndim != 3:
        raise ValueError(f"informative_slices expects a (z, y, x) mask, got shape {mask.shape}")
    fraction = mask.reshape(mask.shape[0], -1).mean(axis=1)
    return fraction > min_fraction
