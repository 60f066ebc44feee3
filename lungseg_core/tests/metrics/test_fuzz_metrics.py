"""Property tests of the metrics on random small masks: bounds, symmetry, identity and the empty-mask rules
documented in lungseg_core.metrics.overlap and .surface."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lungseg_core.metrics import average_surface_distance, compute_label_metrics, dice, hd95, iou, nsd, precision, recall

# Derandomized, without an example database: reproducible in CI and nothing written into the checkout.
FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True)


@st.composite
def mask_pairs(draw, max_side=7):
    """Two boolean masks of one random 2D or 3D shape, and a positive (z, y, x) spacing in mm."""
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=max_side))
    pred = draw(hnp.arrays(bool, shape))
    ref = draw(hnp.arrays(bool, shape))
    spacing = tuple(draw(st.floats(0.1, 10.0)) for _ in shape)
    return pred, ref, spacing


def diagonal_mm(shape, spacing) -> float:
    return math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, spacing)))


@FUZZ
@given(mask_pairs())
def test_overlap_scores_are_bounded_symmetric_and_consistent(pair):
    pred, ref, _ = pair
    d, j = dice(pred, ref), iou(pred, ref)
    for value in (d, j, precision(pred, ref), recall(pred, ref)):
        assert 0.0 <= value <= 1.0
    assert d == dice(ref, pred) and j == iou(ref, pred)
    assert precision(pred, ref) == recall(ref, pred)
    assert math.isclose(d, 2 * j / (1 + j), abs_tol=1e-12)  # Dice and IoU are one monotone function
    assert (d == 1.0) == np.array_equal(pred, ref)
    if pred.any() != ref.any():
        assert d == j == 0.0  # exactly one empty
    if not pred.any() and not ref.any():
        assert d == j == 1.0  # both empty: perfect agreement


@FUZZ
@given(mask_pairs())
def test_surface_distances_are_bounded_symmetric_and_follow_the_empty_rules(pair):
    pred, ref, spacing = pair
    h, a = hd95(pred, ref, spacing), average_surface_distance(pred, ref, spacing)
    if pred.any() and ref.any():
        longest = diagonal_mm(pred.shape, spacing) + 1e-9  # no two voxels are further apart
        assert 0.0 <= h <= longest and 0.0 <= a <= longest
        assert math.isclose(h, hd95(ref, pred, spacing), rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(a, average_surface_distance(ref, pred, spacing), rel_tol=1e-9, abs_tol=1e-9)
        assert 0.0 <= nsd(pred, ref, spacing, 1.0) <= 1.0
    elif pred.any() or ref.any():
        assert math.isnan(h) and math.isnan(a) and nsd(pred, ref, spacing, 1.0) == 0.0
    else:
        assert h == a == 0.0 and nsd(pred, ref, spacing, 1.0) == 1.0


@FUZZ
@given(mask_pairs())
def test_a_mask_against_itself_is_perfect(pair):
    mask, _, spacing = pair
    assert dice(mask, mask) == iou(mask, mask) == 1.0
    assert hd95(mask, mask, spacing) == average_surface_distance(mask, mask, spacing) == 0.0
    assert nsd(mask, mask, spacing, 0.5) == 1.0


@FUZZ
@given(shape=hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6), data=st.data())
def test_label_metrics_rows_match_the_binary_metrics(shape, data):
    pred = data.draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 2)))
    ref = data.draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 2)))
    rows = compute_label_metrics(pred, ref, {1: "right", 2: "left", (1, 2): "both"}, (2.0, 1.0, 1.0))
    assert [r["label"] for r in rows] == ["1", "2", "1+2"]
    for row, (p, r) in zip(rows, [(pred == 1, ref == 1), (pred == 2, ref == 2), (pred > 0, ref > 0)]):
        assert row["dice"] == dice(p, r)
        assert math.isclose(row["volume_diff_ml"], (p.sum() - r.sum()) * 2.0 / 1000.0, abs_tol=1e-12)
