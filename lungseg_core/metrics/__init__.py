"""Segmentation metrics (MONAI style: a plain function and a small accumulating class for each).

Masks are binary (any nonzero voxel is inside), arrays are (z, y, x), spacing is (z, y, x) mm or taken from
a :class:`~lungseg_core.io.Volume`. :func:`compute_label_metrics` gives every metric for every label of a
pair of labelmaps, as the rows ``lungseg evaluate`` writes to ``metrics.csv``.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np

from lungseg_core.metrics.overlap import (
    CumulativeMetric,
    DiceMetric,
    IoUMetric,
    PrecisionMetric,
    RecallMetric,
    dice,
    iou,
    overlap_metrics,
    precision,
    recall,
)
from lungseg_core.metrics.surface import (
    AverageSurfaceDistanceMetric,
    HausdorffDistance95Metric,
    NormalizedSurfaceDiceMetric,
    SurfaceDistances,
    asd,
    average_surface_distance,
    hd95,
    normalized_surface_dice,
    nsd,
    surface_distances,
    surface_voxels,
)
from lungseg_core.metrics.volume import (
    VolumeDifferenceMetric,
    VolumeMetric,
    volume_difference_ml,
    volume_ml,
    voxel_volume_ml,
)

LabelKey = Union[int, tuple[int, ...]]  # one label value, or several evaluated as their union
NSD_TOLERANCES_MM: tuple[float, ...] = (1.0, 3.0)


def nsd_column(tolerance_mm: float) -> str:
    return f"nsd_{tolerance_mm:g}mm"


def label_text(key: LabelKey) -> str:
    """How a label key is written in result tables: ``1`` or, for a union, ``1+2``."""
    return "+".join(str(v) for v in key) if isinstance(key, tuple) else str(key)


def metric_columns(nsd_tolerances_mm: Sequence[float] = NSD_TOLERANCES_MM) -> list[str]:
    """The per-label metric columns, in table order."""
    return (
        ["dice", "iou", "precision", "recall", "hd95_mm", "asd_mm"]
        + [nsd_column(t) for t in nsd_tolerances_mm]
        + ["volume_pred_ml", "volume_ref_ml", "volume_diff_ml"]
    )


def _label_mask(labels: np.ndarray, key: LabelKey) -> np.ndarray:
    return np.isin(labels, key) if isinstance(key, tuple) else labels == key


def binary_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing_zyx: Sequence[float],
    voxel_ml: float,
    nsd_tolerances_mm: Sequence[float] = NSD_TOLERANCES_MM,
) -> dict[str, float]:
    """Every metric of one pair of binary masks; surface distances are computed once and shared."""
    row: dict[str, float] = overlap_metrics(pred, ref)
    distances = surface_distances(pred, ref, spacing_zyx)
    row["hd95_mm"] = distances.hd95()
    row["asd_mm"] = distances.asd()
    for tolerance in nsd_tolerances_mm:
        row[nsd_column(tolerance)] = distances.nsd(tolerance)
    row["volume_pred_ml"] = volume_ml(pred, voxel_ml=voxel_ml)
    row["volume_ref_ml"] = volume_ml(ref, voxel_ml=voxel_ml)
    row["volume_diff_ml"] = row["volume_pred_ml"] - row["volume_ref_ml"]
    return row


def compute_label_metrics(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    labels: Mapping[LabelKey, str],
    spacing_zyx: Sequence[float],
    voxel_ml: float | None = None,
    nsd_tolerances_mm: Sequence[float] = NSD_TOLERANCES_MM,
) -> list[dict]:
    """One row per label: ``label``, ``label_name`` and every metric column (see :func:`metric_columns`).

    ``labels`` maps a label value (or a tuple of values, evaluated as their union, e.g. both lungs) to its
    name. ``voxel_ml`` defaults to the product of ``spacing_zyx`` / 1000.
    """
    pred_labels, ref_labels = np.asarray(pred_labels), np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(f"prediction shape {pred_labels.shape} differs from reference shape {ref_labels.shape}")
    if voxel_ml is None:
        voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    rows = []
    for key, name in labels.items():
        metrics = binary_metrics(
            _label_mask(pred_labels, key), _label_mask(ref_labels, key), spacing_zyx, voxel_ml, nsd_tolerances_mm
        )
        rows.append({"label": label_text(key), "label_name": name, **metrics})
    return rows


__all__ = [
    "AverageSurfaceDistanceMetric",
    "CumulativeMetric",
    "DiceMetric",
    "HausdorffDistance95Metric",
    "IoUMetric",
    "NSD_TOLERANCES_MM",
    "NormalizedSurfaceDiceMetric",
    "PrecisionMetric",
    "RecallMetric",
    "SurfaceDistances",
    "VolumeDifferenceMetric",
    "VolumeMetric",
    "asd",
    "average_surface_distance",
    "binary_metrics",
    "compute_label_metrics",
    "dice",
    "hd95",
    "iou",
    "label_text",
    "metric_columns",
    "normalized_surface_dice",
    "nsd",
    "nsd_column",
    "overlap_metrics",
    "precision",
    "recall",
    "surface_distances",
    "surface_voxels",
    "volume_difference_ml",
    "volume_ml",
    "voxel_volume_ml",
]
