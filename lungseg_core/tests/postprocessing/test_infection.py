"""Infection post-processing on tiny arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io.volume import Volume
from lungseg_core.postprocessing import remove_small_components, restrict_infection


def test_restrict_infection_zeroes_outside_lungs():
    infection = np.array([[[1, 2, 1, 0]]], np.uint8)
    lungs = np.array([[[1, 0, 2, 2]]], np.uint8)
    out = restrict_infection(infection, lungs)
    np.testing.assert_array_equal(out, [[[1, 0, 1, 0]]])
    assert out.dtype == np.uint8


def test_restrict_infection_shape_mismatch():
    with pytest.raises(ValueError):
        restrict_infection(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))


def test_remove_small_components_keeps_consolidation_and_ggo_values():
    volume = Volume(np.zeros((2, 4, 4)), spacing=(1.0, 1.0, 1.0))  # 1 voxel = 0.001 mL
    infection = np.zeros((2, 4, 4), np.uint8)
    infection[:, 0:2, 0:2] = 1
    infection[0, 0, 1] = 2  # mixed component of 8 voxels
    infection[1, 3, 3] = 2  # single voxel
    out = remove_small_components(infection, volume, min_volume_ml=0.002)
    assert out[1, 3, 3] == 0
    assert out[0, 0, 1] == 2 and (out[:, 0:2, 0:2] > 0).all()
    assert int((out > 0).sum()) == 8
