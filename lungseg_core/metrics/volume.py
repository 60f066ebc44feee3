"""Volume of a mask in mL and the signed volume difference between prediction and reference.

The voxel size comes from ``voxel_ml`` (mL per voxel), or from spacing (z, y, x) mm, or from a
:class:`Volume` argument; 1 mL = 1000 mm^3. Empty masks simply have volume 0, so no special case exists.
"""

from __future__ import annotations

import numpy as np

from lungseg_core.metrics.overlap import CumulativeMetric, MaskLike, as_mask, as_mask_pair
from lungseg_core.metrics.surface import SpacingLike, resolve_spacing


def voxel_volume_ml(spacing: SpacingLike = None, *masks: MaskLike, ndim: int = 3) -> float:
    """mL per voxel from spacing (z, y, x) mm or a Volume; 1 mm^3 (0.001 mL) when nothing is known."""
    return float(np.prod(resolve_spacing(spacing, ndim, *masks))) / 1000.0


def _voxel_ml(voxel_ml: float | None, spacing: SpacingLike, masks: tuple[MaskLike, ...], ndim: int) -> float:
    if voxel_ml is None:
        return voxel_volume_ml(spacing, *masks, ndim=ndim)
    if not np.isfinite(voxel_ml) or voxel_ml <= 0:
        raise ValueError(f"voxel_ml must be a positive number, got {voxel_ml}")
    return float(voxel_ml)


def volume_ml(mask: MaskLike, spacing: SpacingLike = None, voxel_ml: float | None = None) -> float:
    """Volume of the nonzero voxels of ``mask`` in mL."""
    array = as_mask(mask)
    return int(np.count_nonzero(array)) * _voxel_ml(voxel_ml, spacing, (mask,), array.ndim)


def volume_difference_ml(
    pred: MaskLike, ref: MaskLike, spacing: SpacingLike = None, voxel_ml: float | None = None
) -> float:
    """Signed difference prediction - reference in mL: positive means the prediction is too large."""
    pred_mask, ref_mask = as_mask_pair(pred, ref)
    size = _voxel_ml(voxel_ml, spacing, (pred, ref), pred_mask.ndim)
    return (int(np.count_nonzero(pred_mask)) - int(np.count_nonzero(ref_mask))) * size


class VolumeDifferenceMetric(CumulativeMetric):
    """Accumulating wrapper of :func:`volume_difference_ml` (mL, prediction minus reference)."""

    name = "volume_diff_ml"
    unit = "mL"

    def __init__(self, spacing: SpacingLike = None, voxel_ml: float | None = None) -> None:
        super().__init__()
        self.spacing = spacing
        self.voxel_ml = voxel_ml

    def compute(self, pred: MaskLike, ref: MaskLike) -> float:
        return volume_difference_ml(pred, ref, self.spacing, self.voxel_ml)


class VolumeMetric(CumulativeMetric):
    """Accumulating wrapper of :func:`volume_ml` applied to the prediction (mL)."""

    name = "volume_ml"
    unit = "mL"

    def __init__(self, spacing: SpacingLike = None, voxel_ml: float | None = None) -> None:
        super().__init__()
        self.spacing = spacing
        self.voxel_ml = voxel_ml

    def compute(self, pred: MaskLike, ref: MaskLike | None = None) -> float:
        return volume_ml(pred, self.spacing, self.voxel_ml)

    def __call__(self, pred: MaskLike, ref: MaskLike | None = None) -> float:
        return super().__call__(pred, ref)
