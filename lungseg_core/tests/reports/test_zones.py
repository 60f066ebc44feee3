"""Zone geometry in patient space and the severity score's exact edges."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io.volume import Volume
from lungseg_core.reports.zones import lps_axis_of_indices, lung_zone_measures, severity_score, zone_members


@pytest.mark.parametrize(
    "percent, score",
    [(None, None), (0.0, 0), (1e-9, 1), (1.0, 1), (25.0, 1), (25.0001, 2), (50.0, 2), (50.5, 3), (75.0, 3),
     (75.01, 4), (100.0, 4)],
)
def test_severity_edges(percent, score):
    assert severity_score(percent) == score


def _oblique_volume(shape=(5, 6, 7)):
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return Volume(np.zeros(shape), (0.8, 1.7, 3.1), (12.0, -40.0, 300.0), q)


@pytest.mark.parametrize("lps_axis", [0, 1, 2])
def test_lps_coordinates_match_zyx_to_lps_on_oblique_geometry(lps_axis):
    volume = _oblique_volume()
    indices = np.nonzero(np.ones(volume.shape, bool))
    expected = volume.zyx_to_lps(np.stack(indices, axis=1))[:, lps_axis]
    np.testing.assert_allclose(lps_axis_of_indices(volume, indices, lps_axis), expected, atol=1e-9)


def test_thirds_follow_head_foot_axis_not_array_index():
    """Storage with array z pointing to the feet: the upper third is at the lowest indices."""
    direction = np.diag([1.0, 1.0, -1.0])
    volume = Volume(np.zeros((9, 4, 4)), (1, 1, 2), (0, 0, 0), direction)
    mask = np.ones(volume.shape, bool)
    members = zone_members(volume, np.nonzero(mask))
    z_index = np.nonzero(mask)[0]
    assert set(z_index[members["upper"]]) == {0, 1, 2}
    assert set(z_index[members["lower"]]) == {6, 7, 8}
    y_index = np.nonzero(mask)[1]
    assert set(y_index[members["ventral"]]) == {0, 1}  # LPS +y is posterior: low y is ventral


def test_zone_partition_covers_each_voxel_exactly_once():
    volume = _oblique_volume((10, 11, 12))
    rng = np.random.default_rng(0)
    mask = rng.random(volume.shape) > 0.4
    members = zone_members(volume, np.nonzero(mask))
    height = members["upper"].astype(int) + members["middle"] + members["lower"]
    depth = members["ventral"].astype(int) + members["dorsal"]
    assert np.all(height == 1) and np.all(depth == 1)


def test_lung_zone_measures_without_infection_and_for_empty_lung():
    volume = Volume(np.zeros((6, 2, 2)), (1, 1, 1))
    mask = np.ones(volume.shape, bool)
    measures = lung_zone_measures(volume, mask, None)
    assert measures["upper"]["volume_ml"] == pytest.approx(8 / 1000)
    assert measures["upper"]["percent"] is None and measures["severity_total"] is None
    assert lung_zone_measures(volume, np.zeros_like(mask), None) is None


def test_partial_infection_in_middle_third_scores_by_percentage():
    volume = Volume(np.zeros((6, 4, 4)), (1, 1, 1))
    mask = np.ones(volume.shape, bool)
    affected = np.zeros(volume.shape, bool)
    affected[2:4, :2, :] = True  # half of the middle third (z 2..3)
    measures = lung_zone_measures(volume, mask, affected)
    assert measures["middle"]["percent"] == pytest.approx(50.0) and measures["middle"]["severity"] == 2
    assert measures["upper"]["severity"] == 0 and measures["lower"]["severity"] == 0
    assert measures["ventral"]["percent"] == pytest.approx(100 * 16 / 48)
    assert measures["severity_total"] == 2


def test_slice_sum_fast_path_equals_per_voxel_path():
    from lungseg_core.reports import zones

    rng = np.random.default_rng(5)
    volume = Volume(np.zeros((9, 7, 8)), (0.9, 1.4, 2.2), (5, 6, 7), np.diag([-1.0, 1.0, -1.0]))
    mask = rng.random(volume.shape) > 0.3
    affected = rng.random(volume.shape) > 0.7
    profiles = (zones._single_axis_profile(volume, 2), zones._single_axis_profile(volume, 1))
    assert all(p is not None for p in profiles)
    fast = zones._zone_counts_by_slices(volume, mask, affected, profiles)
    assert fast == zones._zone_counts_by_voxels(volume, mask, affected)
