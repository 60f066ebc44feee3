"""Resampling keeps the physical box, label values and patient positions."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io.volume import Volume
from lungseg_core.preprocessing.resample import resample_like, resample_volume
from lungseg_core.synthetic import flip_axes
from lungseg_core.tests.conftest import dice


def _corner_lps(volume: Volume) -> np.ndarray:
    """LPS of the outer corner of voxel (0, 0, 0) (half a voxel before its centre)."""
    return volume.zyx_to_lps(np.full((1, 3), -0.5))[0]


def _far_corner_lps(volume: Volume) -> np.ndarray:
    return volume.zyx_to_lps(np.array([volume.shape], float) - 0.5)[0]


@pytest.mark.parametrize("flips", [(False, False, False), (True, True, False)])
def test_resample_volume_keeps_physical_extent(phantom, flips):
    ct = flip_axes(phantom.ct, flips)
    out = resample_volume(ct, (7.0, 7.0, 3.0), order=1)
    assert out.shape == (96, 48, 48)
    np.testing.assert_allclose(out.spacing, (7.0, 7.0, 3.0))
    np.testing.assert_allclose(out.direction, ct.direction)
    np.testing.assert_allclose(_corner_lps(out), _corner_lps(ct), atol=1e-4)
    np.testing.assert_allclose(_far_corner_lps(out), _far_corner_lps(ct), atol=1e-4)
    assert out.array.dtype == ct.array.dtype


def test_resample_volume_labels_keep_values_and_volume(phantom):
    labels = phantom.ct.with_array(phantom.lungs)
    out = resample_volume(labels, (2.0, 2.0, 2.0), order=0)
    assert set(np.unique(out.array)) <= {0, 1, 2}
    for label in (1, 2):
        ml_before = (phantom.lungs == label).sum() * phantom.ct.voxel_volume_ml
        ml_after = (out.array == label).sum() * out.voxel_volume_ml
        assert ml_after == pytest.approx(ml_before, rel=0.03)


def test_resampled_structure_stays_at_same_patient_position(phantom):
    ct = flip_axes(phantom.ct, (True, False, True))
    lungs = flip_axes(phantom.ct.with_array(phantom.lungs), (True, False, True))
    out = resample_volume(lungs, (2.5, 2.5, 4.0), order=0)
    for label in (1, 2):
        before = ct.zyx_to_lps(np.argwhere(lungs.array == label).mean(0, keepdims=True))[0]
        after = out.zyx_to_lps(np.argwhere(out.array == label).mean(0, keepdims=True))[0]
        np.testing.assert_allclose(after, before, atol=1.5)


def test_resample_like_matches_target_grid_and_round_trips(phantom):
    target = resample_volume(phantom.ct, (5.0, 5.0, 4.0), order=1)
    on_target = resample_like(phantom.lungs, phantom.ct, target)
    assert on_target.shape == target.shape and on_target.dtype == phantom.lungs.dtype
    assert set(np.unique(on_target)) <= {0, 1, 2}
    direct = resample_volume(phantom.ct.with_array(phantom.lungs), (5.0, 5.0, 4.0), order=0).array
    assert (on_target == direct).mean() > 0.999
    back = resample_like(on_target, target, phantom.ct)
    assert back.shape == phantom.ct.shape
    for label in (1, 2):
        assert dice(back == label, phantom.lungs == label) > 0.9


def test_resample_bool_mask_and_bad_arguments(phantom):
    mask = phantom.ct.with_array(phantom.lungs > 0)
    out = resample_volume(mask, (7.0, 7.0, 6.0), order=0)
    assert out.array.dtype == bool and out.array.any()
    with pytest.raises(ValueError):
        resample_volume(phantom.ct, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        resample_volume(phantom.ct, (1.0, 1.0, 1.0), order=2)
    with pytest.raises(ValueError):
        resample_like(phantom.lungs[:-1], phantom.ct, phantom.ct)
