"""Resampling volumes and labelmaps with SimpleITK, keeping patient-space geometry exact.

``resample_volume`` keeps the physical extent (the outer voxel edges stay where they were), so a volume
resampled to another spacing overlays the original in Slicer. ``resample_like`` puts a labelmap onto
another volume's grid with nearest neighbour, so label values are never blended.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lungseg_core.io.volume import Volume

_ORDER_TO_INTERPOLATOR = {0: "sitkNearestNeighbor", 1: "sitkLinear", 3: "sitkBSpline"}


def _interpolator(order: int):
    import SimpleITK as sitk

    if order not in _ORDER_TO_INTERPOLATOR:
        raise ValueError(f"order must be 0 (nearest), 1 (linear) or 3 (B-spline), got {order}")
    return getattr(sitk, _ORDER_TO_INTERPOLATOR[order])


def _as_sitk_friendly(array: np.ndarray) -> np.ndarray:
    """SimpleITK has no bool pixel type."""
    return array.astype(np.uint8) if array.dtype == bool else array


def output_size(volume: Volume, spacing: Sequence[float]) -> tuple[int, int, int]:
    """(x, y, z) voxel counts covering the same extent at ``spacing`` (at least one voxel per axis)."""
    size_xyz = np.array(volume.shape[::-1], dtype=float)
    extent = size_xyz * np.asarray(volume.spacing)
    return tuple(int(max(1, round(e / s))) for e, s in zip(extent, spacing))


def resample_volume(volume: Volume, spacing: Sequence[float], order: int = 1,
                    default_value: float | None = None) -> Volume:
    """``volume`` on a grid with ``spacing`` (x, y, z) mm covering the same physical box.

    The new origin is shifted by half the spacing change so the outer voxel edges coincide. ``order`` 0 is
    nearest (labels), 1 linear, 3 B-spline. The dtype is kept (SimpleITK rounds/casts). Outside values
    (only at the rim, from rounding the size) get ``default_value``, by default the volume's minimum.
    """
    import SimpleITK as sitk

    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers (x, y, z) in mm, got {spacing}")
    size_xyz = output_size(volume, spacing)
    # keep the physical box: extent / size may differ slightly from spacing after rounding the size
    extent = np.array(volume.shape[::-1], dtype=float) * np.asarray(volume.spacing)
    exact_spacing = tuple(float(e / n) for e, n in zip(extent, size_xyz))
    shift = volume.direction @ ((np.asarray(exact_spacing) - np.asarray(volume.spacing)) / 2.0)
    origin = tuple(np.asarray(volume.origin) + shift)
    array = np.asarray(volume.array)
    if default_value is None:
        default_value = float(array.min()) if array.size else 0.0
    image = volume.with_array(_as_sitk_friendly(array)).to_sitk()
    resampled = sitk.Resample(
        image, [int(n) for n in size_xyz], sitk.Transform(), _interpolator(order), origin, exact_spacing,
        tuple(volume.direction.flatten()), float(default_value), image.GetPixelID(),
    )
    out = sitk.GetArrayFromImage(resampled)
    if array.dtype == bool:
        out = out.astype(bool)
    return Volume(out, exact_spacing, origin, volume.direction, intensity=volume.intensity,
                  is_2d=volume.is_2d and out.shape[0] == 1, name=volume.name, metadata=dict(volume.metadata))


def resample_like(labels: np.ndarray, source: Volume, target: Volume, order: int = 0) -> np.ndarray:
    """``labels`` (on ``source``'s grid) resampled onto ``target``'s grid; nearest by default, 0 outside."""
    import SimpleITK as sitk

    labels = np.asarray(labels)
    if labels.shape != source.shape:
        raise ValueError(f"labels shape {labels.shape} differs from source volume shape {source.shape}")
    moving = source.with_array(_as_sitk_friendly(labels)).to_sitk()
    reference = target.with_array(np.zeros(target.shape, dtype=np.uint8)).to_sitk()
    resampled = sitk.Resample(moving, reference, sitk.Transform(), _interpolator(order), 0.0, moving.GetPixelID())
    out = sitk.GetArrayFromImage(resampled)
    return out.astype(bool) if labels.dtype == bool else out
