"""Volumes in mL from spacing, voxel size or a Volume, and the signed volume difference."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io import Volume
from lungseg_core.metrics import VolumeDifferenceMetric, VolumeMetric, volume_difference_ml, volume_ml


def block(n_slices: int) -> np.ndarray:
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[:n_slices, :5, :4] = 1  # 20 voxels per slice
    return mask


def test_volume_from_spacing_zyx():
    # 100 voxels of 2.5 x 0.5 x 0.8 mm = 1 mm^3 each -> 0.1 mL
    assert volume_ml(block(5), spacing=(2.5, 0.5, 0.8)) == pytest.approx(0.1)


def test_volume_from_voxel_ml_and_from_a_volume():
    assert volume_ml(block(5), voxel_ml=0.002) == pytest.approx(0.2)
    volume = Volume(block(5), spacing=(1.0, 2.0, 5.0))  # (x, y, z): 10 mm^3 per voxel
    assert volume_ml(volume) == pytest.approx(1.0)
    assert volume_ml(block(5), spacing=volume) == pytest.approx(1.0)


def test_unknown_spacing_counts_one_cubic_millimetre_per_voxel():
    assert volume_ml(block(5)) == pytest.approx(100 / 1000)


def test_volume_difference_is_prediction_minus_reference():
    spacing = (10.0, 1.0, 1.0)  # 0.01 mL per voxel
    assert volume_difference_ml(block(7), block(5), spacing) == pytest.approx(0.4)
    assert volume_difference_ml(block(5), block(7), spacing) == pytest.approx(-0.4)
    assert volume_difference_ml(np.zeros((10, 10, 10)), np.zeros((10, 10, 10)), spacing) == 0.0


def test_invalid_voxel_size_is_refused():
    with pytest.raises(ValueError):
        volume_ml(block(5), voxel_ml=0.0)
    with pytest.raises(ValueError):
        volume_ml(block(5), spacing=(1.0, -1.0, 1.0))


def test_volume_metric_classes():
    diff = VolumeDifferenceMetric(voxel_ml=0.01)
    diff(block(7), block(5))
    diff(block(5), block(5))
    assert diff.aggregate() == pytest.approx(0.2)
    assert VolumeMetric(spacing=(10.0, 1.0, 1.0))(block(5)) == pytest.approx(1.0)
