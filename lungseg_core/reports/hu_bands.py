"""Intensity statistics and classical HU bands inside a mask, from one histogram per segment.

Band edges (HU, lower edge inclusive, upper edge exclusive, except the last clinical band):

=================  ==========================
band               voxels counted
=================  ==========================
emphysema_like     HU < -950
well_aerated       -950 <= HU < -750
poorly_aerated     -750 <= HU < -400
non_aerated        -400 <= HU <= 0
above_0            HU > 0 (vessels, dense consolidation, calcification)
=================  ==========================

``above_0`` is reported so that the five percentages of a lung add up to 100 %.
Thresholds follow the usual quantitative-CT literature; they assume a calibrated HU scale and are
meaningless for display-intensity (0-255) images, for which no bands are computed.
"""

from __future__ import annotations

import numpy as np

PERCENTILES = (5, 25, 50, 75, 95)

# (name, lower bound or None, upper bound or None, upper bound inclusive?)
HU_BANDS: tuple[tuple[str, float | None, float | None, bool], ...] = (
    ("emphysema_like", None, -950.0, False),
    ("well_aerated", -950.0, -750.0, False),
    ("poorly_aerated", -750.0, -400.0, False),
    ("non_aerated", -400.0, 0.0, True),
    ("above_0", 0.0, None, False),  # lower edge exclusive: 0 HU itself is non-aerated
)


def band_masks(values: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean membership of each value in each band (the bands partition the real line)."""
    values = np.asarray(values, dtype=float)
    masks = {}
    for name, low, high, high_inclusive in HU_BANDS:
        inside = np.ones(values.shape, bool)
        if low is not None:
            inside &= values > low if name == "above_0" else values >= low
        if high is not None:
            inside &= values <= high if high_inclusive else values < high
        masks[name] = inside
    return masks


def value_histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (float, ascending) and their counts: an exact, compact stand-in for sorting.

    Integer CTs hold a few thousand distinct values, so one ``bincount`` replaces a sort of millions.
    """
    values = np.asarray(values).ravel()
    if values.size == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    if np.issubdtype(values.dtype, np.integer):
        low = int(values.min())
        counts = np.bincount((values.astype(np.int64) - low))
        present = np.nonzero(counts)[0]
        return present.astype(float) + low, counts[present].astype(np.int64)
    unique, counts = np.unique(values, return_counts=True)
    return unique.astype(float), counts.astype(np.int64)


def merge_histograms(*histograms: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of the union of several segments (e.g. both lungs from right and left)."""
    values = np.concatenate([h[0] for h in histograms])
    counts = np.concatenate([h[1] for h in histograms])
    unique, inverse = np.unique(values, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=unique.size).astype(np.int64)


def _percentiles(unique: np.ndarray, counts: np.ndarray, qs) -> list[float]:
    """numpy's default ('linear') percentiles, computed from the value histogram."""
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    result = []
    for q in qs:
        position = q / 100.0 * (n - 1)
        low_rank, high_rank = int(np.floor(position)), int(np.ceil(position))
        low_value = unique[np.searchsorted(cumulative, low_rank + 1)]
        high_value = unique[np.searchsorted(cumulative, high_rank + 1)]
        result.append(float(low_value + (position - low_rank) * (high_value - low_value)))
    return result


def stats_from_histogram(unique: np.ndarray, counts: np.ndarray) -> dict | None:
    """Mean, standard deviation (population) and percentiles p5..p95; None for an empty segment."""
    n = int(counts.sum())
    if n == 0:
        return None
    mean = float((unique * counts).sum() / n)
    std = float(np.sqrt(max(((unique - mean) ** 2 * counts).sum() / n, 0.0)))
    stats = {"mean": mean, "std": std}
    stats.update({f"p{q}": v for q, v in zip(PERCENTILES, _percentiles(unique, counts, PERCENTILES))})
    return {k: round(v, 3) for k, v in stats.items()}


def bands_from_histogram(unique: np.ndarray, counts: np.ndarray, voxel_volume_ml: float) -> dict | None:
    """Volume (mL) and percentage of the segment in each band; None for an empty segment."""
    total = int(counts.sum())
    if total == 0:
        return None
    result = {}
    for name, inside in band_masks(unique).items():
        n = int(counts[inside].sum())
        result[name] = {"volume_ml": n * voxel_volume_ml, "percent": 100.0 * n / total}
    return result


def intensity_stats(values: np.ndarray) -> dict | None:
    """Statistics of raw values (see :func:`stats_from_histogram`)."""
    return stats_from_histogram(*value_histogram(values))


def hu_band_volumes(values: np.ndarray, voxel_volume_ml: float) -> dict[str, dict[str, float]] | None:
    """HU bands of raw values (see :func:`bands_from_histogram`)."""
    return bands_from_histogram(*value_histogram(values), voxel_volume_ml)
