"""Known answers for HD95, ASD and NSD: shifted cubes, anisotropic spacing, tolerances, empty masks."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io import Volume
from lungseg_core.metrics import (
    AverageSurfaceDistanceMetric,
    HausdorffDistance95Metric,
    NormalizedSurfaceDiceMetric,
    average_surface_distance,
    hd95,
    normalized_surface_dice,
    surface_distances,
    surface_voxels,
)

METHODS = ["edt", "kdtree"]


def cube(shape=(30, 34, 38), start=(8, 9, 10), size=(12, 12, 12)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return mask


def shifted(mask: np.ndarray, k: int, axis: int) -> np.ndarray:
    return np.roll(mask, k, axis=axis)  # the cube sits far from the edges, so nothing wraps


def sphere(shape=(40, 40, 40), centre=(20, 20, 20), radius=10.0) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def test_surface_of_a_cube_is_its_shell():
    mask = cube(size=(4, 4, 4))
    assert surface_voxels(mask).sum() == 4**3 - 2**3


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_shifted_cubes_give_hd95_of_the_shift(method, axis, k):
    ref = cube()
    pred = shifted(ref, k, axis)
    spacing = (2.5, 0.7, 0.9)
    distances = surface_distances(pred, ref, spacing, method=method)
    assert distances.hd95() == pytest.approx(k * spacing[axis])
    # the farthest surface voxel is exactly the shift away
    assert max(distances.pred_to_ref.max(), distances.ref_to_pred.max()) == pytest.approx(k * spacing[axis])


def test_anisotropic_spacing_scales_distances_along_each_axis():
    ref = cube()
    along_z, along_x = shifted(ref, 2, 0), shifted(ref, 2, 2)
    spacing = (3.0, 1.0, 0.5)
    assert hd95(along_z, ref, spacing) == pytest.approx(6.0)
    assert hd95(along_x, ref, spacing) == pytest.approx(1.0)
    # isotropic default: voxels
    assert hd95(along_z, ref) == hd95(along_x, ref) == pytest.approx(2.0)
    # ASD grows with the spacing along the shift axis, by at most the same factor (in-plane
    # neighbours at 1 mm become the nearest surface for some voxels)
    isotropic = average_surface_distance(along_z, ref)
    assert isotropic < average_surface_distance(along_z, ref, spacing) <= 3.0 * isotropic


def test_spacing_taken_from_a_volume_is_reordered_to_zyx():
    ref = cube()
    pred = Volume(shifted(ref, 2, 0).astype(np.uint8), spacing=(0.5, 1.0, 3.0))  # (x, y, z)
    assert hd95(pred, ref) == pytest.approx(6.0)
    assert hd95(shifted(ref, 2, 0), ref, spacing=pred) == pytest.approx(6.0)


@pytest.mark.parametrize("method", METHODS)
def test_identical_masks_have_zero_distance_and_full_nsd(method):
    mask = sphere()
    distances = surface_distances(mask, mask, (1.0, 1.0, 1.0), method=method)
    assert distances.hd95() == 0.0 and distances.asd() == 0.0 and distances.nsd(0.0) == 1.0


def test_nsd_is_one_within_tolerance_and_below_one_outside():
    ref = cube()
    pred = shifted(ref, 2, 2)
    spacing = (1.0, 1.0, 1.0)
    assert normalized_surface_dice(pred, ref, spacing, tolerance_mm=2.0) == 1.0
    assert normalized_surface_dice(pred, ref, spacing, tolerance_mm=3.0) == 1.0
    partial = normalized_surface_dice(pred, ref, spacing, tolerance_mm=1.0)
    assert 0.0 < partial < 1.0
    assert normalized_surface_dice(pred, ref, spacing, tolerance_mm=0.5) < partial


def test_spheres_offset_along_one_axis():
    ref = sphere(radius=10)
    pred = sphere(centre=(20, 20, 23), radius=10)
    value = hd95(pred, ref, (1.0, 1.0, 1.0))
    assert 2.0 <= value <= 3.0 + 1e-9  # no surface point is farther than the offset
    # rolled masks: every pred surface voxel has a ref surface voxel exactly 3 x-steps away, so stretching
    # x by 2 raises HD95 but never past 3 * 2 mm
    assert value < hd95(pred, ref, (1.0, 1.0, 2.0)) <= 6.0 + 1e-9


def test_edt_and_kdtree_agree_on_irregular_shapes():
    rng = np.random.default_rng(0)
    pred = rng.random((16, 20, 24)) > 0.7
    ref = rng.random((16, 20, 24)) > 0.6
    spacing = (2.0, 0.8, 0.6)
    a = surface_distances(pred, ref, spacing, method="edt")
    b = surface_distances(pred, ref, spacing, method="kdtree")
    np.testing.assert_allclose(a.pred_to_ref, b.pred_to_ref)
    np.testing.assert_allclose(a.ref_to_pred, b.ref_to_pred)


def test_union_box_crop_matches_a_full_volume_transform():
    from scipy import ndimage

    ref = sphere(shape=(30, 60, 60), centre=(12, 20, 25), radius=6)
    pred = sphere(shape=(30, 60, 60), centre=(14, 22, 30), radius=7)
    spacing = (2.0, 0.7, 0.7)
    full = ndimage.distance_transform_edt(~surface_voxels(ref), sampling=spacing)[surface_voxels(pred)]
    cropped = surface_distances(pred, ref, spacing, method="edt").pred_to_ref
    np.testing.assert_allclose(np.sort(cropped), np.sort(full))


def test_mask_touching_the_image_edge_has_a_surface_there():
    ref = np.zeros((10, 10, 10), bool)
    ref[:, :, :5] = True  # touches five faces of the image
    pred = ref.copy()
    pred[:, :, 5] = True
    assert hd95(pred, ref) == pytest.approx(1.0)


def test_2d_slices_use_in_plane_surfaces():
    ref = np.zeros((1, 30, 30), bool)
    ref[0, 5:20, 5:20] = True
    pred = np.roll(ref, 4, axis=2)
    # as a depth-1 volume every voxel would be "surface"; in-plane, the shift is the answer
    assert hd95(pred, ref) == pytest.approx(4.0)
    assert normalized_surface_dice(pred, ref, tolerance_mm=4.0) == 1.0


def test_both_empty():
    empty = np.zeros((8, 8, 8), bool)
    assert hd95(empty, empty) == 0.0
    assert average_surface_distance(empty, empty) == 0.0
    assert normalized_surface_dice(empty, empty) == 1.0


@pytest.mark.parametrize("which_empty", ["pred", "ref"])
def test_exactly_one_empty_distances_are_nan_and_nsd_zero(which_empty):
    mask, empty = cube(), np.zeros((30, 34, 38), bool)
    pred, ref = (empty, mask) if which_empty == "pred" else (mask, empty)
    assert np.isnan(hd95(pred, ref))
    assert np.isnan(average_surface_distance(pred, ref))
    assert normalized_surface_dice(pred, ref, tolerance_mm=1000.0) == 0.0


def test_metric_classes_accumulate_and_skip_nan_in_the_mean():
    ref = cube()
    metric = HausdorffDistance95Metric(spacing=(1.0, 1.0, 1.0))
    metric(shifted(ref, 2, 1), ref)
    metric(shifted(ref, 4, 1), ref)
    metric(np.zeros_like(ref), ref)
    assert metric.aggregate() == pytest.approx(3.0)
    assert metric.nan_count == 1
    assert metric(shifted(ref, 2, 0), ref, spacing=(5.0, 1.0, 1.0)) == pytest.approx(10.0)
    assert AverageSurfaceDistanceMetric()(ref, ref) == 0.0
    nsd_metric = NormalizedSurfaceDiceMetric(tolerance_mm=3.0)
    assert nsd_metric.name == "nsd_3mm"
    assert nsd_metric(shifted(ref, 2, 2), ref) == 1.0


def test_bad_spacing_and_method_are_refused():
    with pytest.raises(ValueError, match="spacing"):
        hd95(cube(), cube(), spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="method"):
        surface_distances(cube(), cube(), method="fast")
