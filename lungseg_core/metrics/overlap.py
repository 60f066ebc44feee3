"""Overlap metrics of binary masks: Dice, IoU (Jaccard), precision, recall.

Empty-mask conventions (the same in every metric here, and tested):

* both masks empty: 1.0 -- the prediction agrees perfectly with a reference that has nothing to find;
* exactly one mask empty: 0.0 -- nothing of the structure was found, or everything found is false.

Precision with an empty prediction and recall with an empty reference have a zero denominator; they follow
the same rule so that a missed or hallucinated structure scores 0 rather than NaN (which a mean would skip).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lungseg_core.io.volume import Volume

MaskLike = Any  # np.ndarray of bools / labels, or a Volume whose array is one


def as_mask(mask: MaskLike) -> np.ndarray:
    """A boolean array of a mask given as an array or a :class:`Volume` (nonzero = inside)."""
    array = mask.array if isinstance(mask, Volume) else np.asarray(mask)
    return array if array.dtype == bool else array != 0


def as_mask_pair(pred: MaskLike, ref: MaskLike) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as booleans, refusing shape mismatches (a silent broadcast would give wrong numbers)."""
    pred_mask, ref_mask = as_mask(pred), as_mask(ref)
    if pred_mask.shape != ref_mask.shape:
        raise ValueError(f"prediction shape {pred_mask.shape} differs from reference shape {ref_mask.shape}")
    return pred_mask, ref_mask


def confusion_counts(pred: MaskLike, ref: MaskLike) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) in voxels."""
    pred_mask, ref_mask = as_mask_pair(pred, ref)
    tp = int(np.count_nonzero(pred_mask & ref_mask))
    return tp, int(np.count_nonzero(pred_mask)) - tp, int(np.count_nonzero(ref_mask)) - tp


def _ratio(numerator: float, denominator: float) -> float:
    # denominator 0 only happens when both relevant masks are empty -> perfect agreement (see module doc)
    return 1.0 if denominator == 0 else float(numerator) / float(denominator)


def scores_from_counts(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Dice, IoU, precision and recall from confusion counts: the one place their formulas live.

    Precision of an empty prediction (recall of an empty reference) is 1 only when both masks are empty.
    """
    both_empty = tp + fp + fn == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "precision": 1.0 if both_empty else (tp / (tp + fp) if tp + fp else 0.0),
        "recall": 1.0 if both_empty else (tp / (tp + fn) if tp + fn else 0.0),
    }


def dice(pred: MaskLike, ref: MaskLike) -> float:
    """2|P∩R| / (|P| + |R|)."""
    return scores_from_counts(*confusion_counts(pred, ref))["dice"]


def iou(pred: MaskLike, ref: MaskLike) -> float:
    """|P∩R| / |P∪R| (Jaccard index)."""
    return scores_from_counts(*confusion_counts(pred, ref))["iou"]


def precision(pred: MaskLike, ref: MaskLike) -> float:
    """|P∩R| / |P| (positive predictive value); 0 for an empty prediction of a non-empty reference."""
    return scores_from_counts(*confusion_counts(pred, ref))["precision"]


def recall(pred: MaskLike, ref: MaskLike) -> float:
    """|P∩R| / |R| (sensitivity); 0 for an empty reference with a non-empty prediction."""
    return scores_from_counts(*confusion_counts(pred, ref))["recall"]


class CumulativeMetric:
    """MONAI-style wrapper: call it on (pred, ref) pairs, then ``aggregate()`` the mean; ``reset()`` clears.

    NaN values (undefined distances, see :mod:`lungseg_core.metrics.surface`) are kept in ``values`` but
    left out of the mean, and counted in ``nan_count``.
    """

    name = "metric"
    unit = ""

    def __init__(self) -> None:
        self.values: list[float] = []

    def compute(self, pred: MaskLike, ref: MaskLike) -> float:
        raise NotImplementedError

    def __call__(self, pred: MaskLike, ref: MaskLike) -> float:
        value = float(self.compute(pred, ref))
        self.values.append(value)
        return value

    def aggregate(self) -> float:
        finite = [v for v in self.values if not np.isnan(v)]
        return float(np.mean(finite)) if finite else float("nan")

    @property
    def nan_count(self) -> int:
        return sum(1 for v in self.values if np.isnan(v))

    def reset(self) -> None:
        self.values.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self.values)})"


class DiceMetric(CumulativeMetric):
    """Accumulating wrapper of :func:`dice`."""

    name = "dice"

    def compute(self, pred: MaskLike, ref: MaskLike) -> float:
        return dice(pred, ref)


class IoUMetric(CumulativeMetric):
    """Accumulating wrapper of :func:`iou`."""

    name = "iou"

    def compute(self, pred: MaskLike, ref: MaskLike) -> float:
        return iou(pred, ref)


class PrecisionMetric(CumulativeMetric):
    """Accumulating wrapper of :func:`precision`."""

    name = "precision"

    def compute(self, pred: MaskLike, ref: MaskLike) -> float:
        return precision(pred, ref)


class RecallMetric(CumulativeMetric):
    """Accumulating wrapper of :func:`recall`."""

    name = "recall"

    def compute(self, pred: MaskLike, ref: MaskLike) -> float:
        return recall(pred, ref)


def overlap_metrics(pred: MaskLike, ref: MaskLike) -> dict[str, float]:
    """All four overlap metrics from one pass over the masks."""
    return scores_from_counts(*confusion_counts(pred, ref))
