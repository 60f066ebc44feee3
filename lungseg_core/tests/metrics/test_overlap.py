"""Known-answer tests of Dice, IoU, precision and recall, including the empty-mask conventions."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io import Volume
from lungseg_core.metrics import (
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


def cube(shape=(20, 20, 20), start=(5, 5, 5), size=(8, 8, 8)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return mask


def test_cubes_with_known_overlap():
    # 8x8x8 cubes offset by 2 along x: overlap 8*8*6 = 384 voxels of 512 each
    pred, ref = cube(start=(5, 5, 7)), cube()
    assert dice(pred, ref) == pytest.approx(2 * 384 / (512 + 512))
    assert iou(pred, ref) == pytest.approx(384 / (512 + 512 - 384))
    assert precision(pred, ref) == pytest.approx(384 / 512)
    assert recall(pred, ref) == pytest.approx(384 / 512)


def test_precision_and_recall_differ_for_a_contained_prediction():
    ref = cube(size=(8, 8, 8))
    pred = cube(size=(8, 8, 4))  # half of the reference, nothing outside it
    assert precision(pred, ref) == 1.0
    assert recall(pred, ref) == pytest.approx(0.5)
    assert dice(pred, ref) == pytest.approx(2 * 256 / (256 + 512))


def test_identical_masks_score_one():
    mask = cube()
    assert overlap_metrics(mask, mask) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}


def test_both_empty_is_perfect_agreement():
    empty = np.zeros((4, 5, 6), bool)
    assert dice(empty, empty) == iou(empty, empty) == precision(empty, empty) == recall(empty, empty) == 1.0


@pytest.mark.parametrize("which_empty", ["pred", "ref"])
def test_exactly_one_empty_scores_zero(which_empty):
    mask, empty = cube(), np.zeros((20, 20, 20), bool)
    pred, ref = (empty, mask) if which_empty == "pred" else (mask, empty)
    values = overlap_metrics(pred, ref)
    assert values == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}
    assert (dice(pred, ref), iou(pred, ref), precision(pred, ref), recall(pred, ref)) == (0.0, 0.0, 0.0, 0.0)


def test_labels_and_volumes_are_read_as_nonzero_masks():
    ref = cube().astype(np.uint8) * 2  # label value 2
    pred = Volume(cube(start=(5, 5, 7)).astype(np.uint8))
    assert dice(pred, ref) == pytest.approx(0.75)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))


def test_metric_classes_accumulate_and_reset():
    metric = DiceMetric()
    assert metric(cube(), cube()) == 1.0
    assert metric(cube(start=(5, 5, 7)), cube()) == pytest.approx(0.75)
    assert metric.aggregate() == pytest.approx(0.875)
    assert len(metric.values) == 2
    metric.reset()
    assert metric.values == [] and np.isnan(metric.aggregate())
    pred, ref = cube(start=(5, 5, 7)), cube()
    assert IoUMetric()(pred, ref) == pytest.approx(iou(pred, ref))
    assert PrecisionMetric()(pred, ref) == pytest.approx(precision(pred, ref))
    assert RecallMetric()(pred, ref) == pytest.approx(recall(pred, ref))


def test_compute_label_metrics_rows_per_label_and_union():
    from lungseg_core.metrics import compute_label_metrics, metric_columns

    ref = np.zeros((20, 20, 30), np.uint8)
    ref[5:13, 5:13, 2:10] = 1
    ref[5:13, 5:13, 18:26] = 2
    pred = ref.copy()
    pred[pred == 2] = 0
    pred[5:13, 5:13, 20:28] = 2  # left shifted by 2 voxels along x
    spacing = (2.0, 1.0, 0.5)
    rows = compute_label_metrics(
        pred, ref, {1: "Right lung", 2: "Left lung", (1, 2): "Lungs (both)"}, spacing, voxel_ml=0.001
    )
    assert [r["label"] for r in rows] == ["1", "2", "1+2"]
    assert [r["label_name"] for r in rows] == ["Right lung", "Left lung", "Lungs (both)"]
    assert set(metric_columns()) <= set(rows[0])
    right, left, both = rows
    assert right["dice"] == 1.0 and right["hd95_mm"] == 0.0 and right["nsd_1mm"] == 1.0
    assert left["dice"] == pytest.approx(0.75)
    assert left["hd95_mm"] == pytest.approx(1.0)  # 2 voxels * 0.5 mm
    assert left["volume_pred_ml"] == left["volume_ref_ml"] == pytest.approx(512 * 0.001)
    assert left["volume_diff_ml"] == 0.0
    assert both["dice"] == pytest.approx(2 * (512 + 384) / 2048)


def test_compute_label_metrics_default_voxel_size_from_spacing():
    from lungseg_core.metrics import compute_label_metrics

    ref = np.zeros((4, 4, 4), np.uint8)
    ref[:2] = 1
    rows = compute_label_metrics(np.zeros_like(ref), ref, {1: "GGO"}, (2.0, 5.0, 10.0))
    assert rows[0]["volume_ref_ml"] == pytest.approx(32 * 0.1)
    assert rows[0]["volume_diff_ml"] == pytest.approx(-3.2)
    assert rows[0]["dice"] == 0.0 and np.isnan(rows[0]["hd95_mm"]) and rows[0]["nsd_3mm"] == 0.0
