"""The 2.5D slice contract: prepare_slices / prepare_labels / restore_probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume, reorder_axes
from lungseg_core.preprocessing.intensity import LUNG_WINDOW, to_unit_range
from lungseg_core.preprocessing.slices import (
    SliceLayout,
    SliceSpec,
    foreground_region_means,
    labels_from_probabilities,
    prepare_labels,
    prepare_slices,
    resize_matrix,
    restore_labels,
    restore_probabilities,
    stack_context,
)
from lungseg_core.tests.conftest import dice


def _one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """(Z, s, s) labels -> (Z, K, s, s) float32 probabilities."""
    return np.eye(classes, dtype=np.float32)[labels].transpose(0, 3, 1, 2)


def _round_trip(labels: np.ndarray, layout: SliceLayout, classes: int = 3) -> np.ndarray:
    probs = restore_probabilities(_one_hot(prepare_labels(labels, layout), classes), layout)
    return probs.argmax(axis=0)


def test_spec_channels_and_dict_round_trip():
    spec = SliceSpec(size=128, context=2, enhance="clahe", crop_to_body=False)
    assert spec.in_channels == 5 and SliceSpec().in_channels == 3
    assert SliceSpec().window == LUNG_WINDOW
    restored = SliceSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert restored == spec and isinstance(restored.window, tuple)
    with pytest.raises(ValueError):
        SliceSpec(enhance="sharpen")
    with pytest.raises(ValueError):
        SliceSpec(context=-1)


def test_prepare_slices_shape_range_and_memory(phantom):
    spec = SliceSpec(size=64, context=1)
    x, layout = prepare_slices(phantom.ct, spec)
    assert x.shape == (48, 3, 64, 64) and x.dtype == np.float32
    assert x.nbytes == 48 * 3 * 64 * 64 * 4
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert layout.kind == "hu" and tuple(layout.shape) == phantom.ct.shape
    # lung parenchyma (-860 HU) must stay distinct from soft tissue (40 HU): the window is for lungs
    lungs_small = prepare_labels(phantom.lungs, layout)
    centre = x[:, 1]
    assert centre[lungs_small > 0].mean() < 0.45 and centre[lungs_small == 0].max() > 0.9


def test_neighbour_channels_and_edges(phantom):
    x, _ = prepare_slices(phantom.ct, SliceSpec(size=32, context=2))
    np.testing.assert_array_equal(x[5, 1], x[4, 2])  # channel 1 = previous slice
    np.testing.assert_array_equal(x[5, 4], x[7, 2])  # channel 4 = two slices further
    np.testing.assert_array_equal(x[0, 0], x[0, 2])  # border repeats
    np.testing.assert_array_equal(x[-1, 4], x[-1, 2])
    assert not np.array_equal(x[5, 0], x[5, 2])
    np.testing.assert_array_equal(stack_context(x[:, 2], 2), x)


def test_body_crop_excludes_padding(phantom):
    array = np.full((48, 96, 160), -3024, np.int16)
    array[:, :, 32:128] = phantom.ct.array  # wide image: padding columns either side
    volume = Volume(array, phantom.ct.spacing)
    x, layout = prepare_slices(volume, SliceSpec(size=64))
    y0, y1, x0, x1 = layout.box
    assert x0 >= 32 and x1 <= 128
    assert prepare_labels(np.pad(phantom.lungs, ((0, 0), (0, 0), (32, 32))), layout).any()
    _, full = prepare_slices(volume, SliceSpec(size=64, crop_to_body=False))
    assert full.box == (0, 96, 0, 160)


def test_padding_keeps_aspect_ratio():
    """A disc in a 40 x 80 image stays a disc (not an ellipse) in the square network input."""
    y, x = np.mgrid[0:40, 0:80]
    disc = ((y - 20) ** 2 + (x - 40) ** 2) < 15**2
    array = np.where(disc, 40, -1000).astype(np.int16)[np.newaxis]
    _, layout = prepare_slices(Volume(array), SliceSpec(size=64, context=0, crop_to_body=False))
    small = prepare_labels(disc[np.newaxis].astype(np.uint8), layout)[0]
    rows, cols = np.flatnonzero(small.any(1)), np.flatnonzero(small.any(0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert abs(height - width) <= 1 and width == pytest.approx(64 * 30 / 80, abs=1.5)


@pytest.mark.parametrize("size", [96, 128, 256])
def test_round_trip_recovers_labels(phantom, size):
    _, layout = prepare_slices(phantom.ct, SliceSpec(size=size))
    assert layout.side == 90  # body box of the phantom: sizes >= side enlarge, the round trip is near exact
    for labels in (phantom.lungs, phantom.infection):
        restored = _round_trip(labels, layout)
        assert restored.shape == labels.shape
        for value in (1, 2):
            assert dice(restored == value, labels == value) > 0.97


def test_round_trip_when_shrinking_loses_only_boundaries(phantom):
    """Shrinking 90 -> 48 halves the resolution: lungs survive, small lesions lose some boundary."""
    _, layout = prepare_slices(phantom.ct, SliceSpec(size=48))
    restored = _round_trip(phantom.lungs, layout)
    for value in (1, 2):
        assert dice(restored == value, phantom.lungs == value) > 0.95


def test_round_trip_exact_at_unchanged_size(phantom):
    _, layout = prepare_slices(phantom.ct, SliceSpec(size=96, crop_to_body=False))
    assert layout.side == 96
    np.testing.assert_array_equal(_round_trip(phantom.lungs, layout), phantom.lungs)
    np.testing.assert_allclose(resize_matrix(96, 96), np.eye(96))


def test_restore_outside_crop_is_background_and_sums_to_one(phantom):
    _, layout = prepare_slices(phantom.ct, SliceSpec(size=64))
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(48, 3, 64, 64)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    restored = restore_probabilities(probs, layout)
    assert restored.shape == (3,) + phantom.ct.shape and restored.dtype == np.float32
    np.testing.assert_allclose(restored.sum(axis=0), 1.0, atol=1e-5)
    y0, y1, x0, x1 = layout.box
    assert y0 > 0  # the phantom body does not fill the image: there is an outside
    assert np.all(restored[0, :, :y0] == 1.0) and np.all(restored[1:, :, :y0] == 0.0)
    np.testing.assert_array_equal(restore_labels(probs, layout), labels_from_probabilities(restored))
    with pytest.raises(ValueError):
        restore_probabilities(probs[:, :, :32], layout)


@pytest.mark.parametrize("axes, flips", [((0, 1, 2), (False, False, False)), ((2, 1, 0), (False, True, True))])
def test_foreground_region_means_average_the_restored_probabilities_over_each_region(phantom, axes, flips):
    """What the restored volume of probabilities would give per region (0 outside the crop), without making it,
    in any storage order; a region the network saw nothing of has mean 0."""
    from scipy import ndimage

    _, layout = prepare_slices(phantom.ct, SliceSpec(size=64))
    logits = np.random.default_rng(1).normal(size=(48, 2, 64, 64)).astype(np.float32)
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float16)
    regions = np.zeros(phantom.ct.shape, np.int32)
    regions[3:9, 20:40, 10:30], regions[20:22, 30:50, 30:60], regions[30, 40:44, 20:24] = 1, 2, 3
    y0 = layout.box[0]
    regions[10:12, :y0, :] = 4  # outside the crop: probability 0
    oracle = ndimage.mean(1 - restore_probabilities(probs, layout)[0], regions, np.arange(1, 5))
    _, stored_layout = prepare_slices(reorder_axes(phantom.ct, axes, flips), SliceSpec(size=64))
    stored_regions = reorder_axes(phantom.ct.with_array(regions), axes, flips).array
    means = foreground_region_means(probs, stored_layout, stored_regions, 4)
    np.testing.assert_allclose(means, oracle, atol=1e-4)
    assert 0.3 < means[0] < 0.7 and means[3] == 0


def test_layout_dict_round_trip(phantom):
    for volume in (phantom.ct, reorder_axes(phantom.ct, (2, 0, 1), (True, False, False))):
        _, layout = prepare_slices(volume, SliceSpec(size=64))
        again = SliceLayout.from_dict(json.loads(json.dumps(layout.to_dict())))
        assert again == layout


@pytest.mark.parametrize("axes, flips", [((0, 1, 2), (True, True, False)), ((1, 0, 2), (False, False, False)),
                                         ((2, 1, 0), (False, True, True))])
def test_any_storage_order_gives_the_axial_slices_and_comes_back_in_its_own_order(phantom, axes, flips):
    """A CT stored coronally, sagittally or flipped is cut into the same axial slices as in LPS order, and
    labels and probabilities return in the input's own axis order."""
    spec = SliceSpec(size=64, context=1)
    stored = reorder_axes(phantom.ct, axes, flips)
    stored_lungs = np.ascontiguousarray(reorder_axes(phantom.ct.with_array(phantom.lungs), axes, flips).array)
    expected, expected_layout = prepare_slices(phantom.ct, spec)
    slices, layout = prepare_slices(stored, spec)
    np.testing.assert_array_equal(slices, expected)
    assert layout.shape == expected_layout.shape and layout.stored_shape == stored.shape
    np.testing.assert_array_equal(prepare_labels(stored_lungs, layout), prepare_labels(phantom.lungs, expected_layout))
    probs = _one_hot(prepare_labels(stored_lungs, layout), 3)
    assert restore_probabilities(probs, layout).shape == (3,) + stored.shape
    restored = restore_labels(probs, expected_layout)
    np.testing.assert_array_equal(restore_labels(probs, layout),
                                  reorder_axes(phantom.ct.with_array(restored), axes, flips).array)
    if stored.shape != phantom.ct.shape:
        with pytest.raises(ValueError):
            prepare_labels(phantom.lungs, layout)  # labels in another axis order than the image


def test_display_path_2d_matches_hu_path(phantom):
    """An 8-bit lung-window export of a slice gives (nearly) the same network input as the HU slice."""
    hu = Volume(phantom.ct.array[24:25], phantom.ct.spacing, is_2d=True)
    display = Volume(np.rint(to_unit_range(hu.array, "hu") * 255).astype(np.uint8), intensity="display", is_2d=True)
    spec = SliceSpec(size=64, crop_to_body=False)
    x_hu, _ = prepare_slices(hu, spec)
    x_display, layout = prepare_slices(display, spec)
    assert layout.kind == "display" and x_display.shape == (1, 3, 64, 64)
    assert np.abs(x_hu - x_display).max() < 0.01


def test_enhancement_changes_input(phantom):
    plain, _ = prepare_slices(phantom.ct, SliceSpec(size=32))
    enhanced, _ = prepare_slices(phantom.ct, SliceSpec(size=32, enhance="histeq"))
    assert enhanced.shape == plain.shape and enhanced.min() >= 0 and enhanced.max() <= 1
    assert np.abs(enhanced - plain).mean() > 0.05


def test_unusable_intensity_is_refused(phantom):
    raw = phantom.ct.with_array(phantom.ct.array.astype(np.int32) + 1024)
    with pytest.raises(InputError, match="rescale"):
        prepare_slices(raw, SliceSpec(size=32))


def test_real_ctchest4_body_crop_and_round_trip(ctchest4_path, ctchest4_reference):
    from lungseg_core.io import read_volume

    ct = read_volume(ctchest4_path)
    lungs = ctchest4_reference.array
    x, layout = prepare_slices(ct, SliceSpec(size=96))
    assert x.shape == (ct.shape[0], 3, 96, 96)
    rows, cols = layout.crop
    assert lungs[:, rows, cols].sum() == lungs.sum()  # the body box keeps every lung voxel
    for value in (1, 2):
        assert dice(_round_trip(lungs, layout) == value, lungs == value) > 0.97
    # body box 99 x 128 padded to 128: at size 128 the round trip is the identity
    _, same_size = prepare_slices(ct, SliceSpec(size=layout.side))
    np.testing.assert_array_equal(_round_trip(lungs, same_size), lungs)


def test_background_is_decided_against_all_foreground_labels_together():
    probs = np.array([[0.25, 0.6, 0.5, 0.1],    # background
                      [0.40, 0.3, 0.1, 0.2],    # GGO
                      [0.35, 0.1, 0.4, 0.7]])   # consolidation
    # the first voxel is 75% infection: argmax would call it background
    np.testing.assert_array_equal(labels_from_probabilities(probs), [1, 0, 0, 2])
    assert probs.argmax(axis=0)[0] == 1 and labels_from_probabilities(probs).dtype == np.uint8
    two = np.array([[0.7, 0.4], [0.3, 0.6]])
    np.testing.assert_array_equal(labels_from_probabilities(two), two.argmax(axis=0))  # one label: argmax
