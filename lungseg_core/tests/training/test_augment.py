"""Augmentation keeps labels valid and aligned with the image."""

import numpy as np
import pytest
from scipy import ndimage

from lungseg_core.errors import InputError
from lungseg_core.training.augment import AugmentConfig, Augmenter, coarser


def _image_and_threshold_labels(size: int = 64):
    """A smooth image whose labels are a threshold of it: any misalignment shows as disagreement."""
    y, x = np.mgrid[0:size, 0:size]
    blob1 = np.exp(-(((y - 20) / 8.0) ** 2 + ((x - 22) / 12.0) ** 2))
    blob2 = np.exp(-(((y - 42) / 10.0) ** 2 + ((x - 44) / 6.0) ** 2))
    image = (0.9 * blob1 + 0.6 * blob2).astype(np.float32)
    labels = np.zeros((size, size), np.uint8)
    labels[image > 0.5] = 1
    labels[(blob2 > blob1) & (image > 0.5)] = 2
    return image[None], labels


GEOMETRY = {"enabled": True, "flip_lr": 0.5, "flip_ud": 0.5, "rot90_prob": 0.5, "rotate_prob": 1.0, "rotate_deg": 20,
            "scale_prob": 1.0, "scale_range": [0.9, 1.1]}


@pytest.mark.parametrize("seed", range(6))
def test_geometry_keeps_labels_aligned_with_the_image(seed):
    image, labels = _image_and_threshold_labels()
    out_image, out_labels = Augmenter(GEOMETRY, np.random.default_rng(seed))(image, labels)
    assert set(np.unique(out_labels)) <= {0, 1, 2}  # nearest neighbour: no blended label values
    assert out_labels.dtype == labels.dtype and out_image.shape == image.shape
    inside = out_image[0] > 0.5
    agreement = np.mean(inside == (out_labels > 0))
    assert agreement > 0.98  # only boundary pixels may differ after interpolation


def test_rotation_actually_moves_things():
    image, labels = _image_and_threshold_labels()
    config = {"enabled": True, "rotate_prob": 1.0, "rotate_deg": 20}
    _, out_labels = Augmenter(config, np.random.default_rng(3))(image, labels)
    assert np.mean(out_labels != labels) > 0.01


@pytest.mark.parametrize("seed", range(3))
def test_elastic_deformation_moves_image_and_labels_together_within_its_magnitude(seed):
    image, labels = _image_and_threshold_labels()
    config = {"enabled": True, "elastic_prob": 1.0, "elastic_magnitude": 3.0, "elastic_sigma": 6.0}
    out_image, out_labels = Augmenter(config, np.random.default_rng(seed))(image, labels)
    assert set(np.unique(out_labels)) <= {0, 1, 2} and out_labels.dtype == labels.dtype
    assert np.mean(out_labels != labels) > 0.005  # it moved something
    assert np.mean((out_image[0] > 0.5) == (out_labels > 0)) > 0.98  # ... the same way in both arrays
    # no pixel moves further than the magnitude: each output label exists within 3 px in the input
    for value in (1, 2):
        near = ndimage.binary_dilation(labels == value, np.ones((3, 3), bool), iterations=3)
        assert not np.any((out_labels == value) & ~near)


def test_elastic_options_are_checked():
    with pytest.raises(InputError, match="elastic"):
        AugmentConfig.from_dict({"elastic_sigma": 0})
    with pytest.raises(InputError, match="elastic_prob"):
        AugmentConfig.from_dict({"elastic_prob": 2})


def test_quarter_turns_go_both_ways_and_refuse_side_labels():
    image, labels = _image_and_threshold_labels()
    turned = set()
    for seed in range(12):
        out_image, out_labels = Augmenter({"enabled": True, "rot90_prob": 1.0}, np.random.default_rng(seed))(image, labels)
        turns = [k for k in (1, 3) if np.array_equal(out_labels, np.rot90(labels, k))]
        assert len(turns) == 1 and np.array_equal(out_image[0], np.rot90(image[0], turns[0]))
        turned.add(turns[0])
    assert turned == {1, 3}
    with pytest.raises(InputError, match="rot90_prob"):
        AugmentConfig.from_dict({"rot90_prob": 0.5, "swap_labels_on_lr_flip": [1, 2]})


def test_lr_flip_swaps_side_labels_when_asked():
    image, labels = _image_and_threshold_labels()
    config = {"enabled": True, "flip_lr": 1.0, "swap_labels_on_lr_flip": [1, 2]}
    out_image, out_labels = Augmenter(config, np.random.default_rng(0))(image, labels)
    np.testing.assert_array_equal(out_image, image[..., ::-1])
    mirrored = labels[:, ::-1]
    assert np.all(out_labels[mirrored == 1] == 2) and np.all(out_labels[mirrored == 2] == 1)


def test_intensity_jitter_changes_image_only_and_stays_in_unit_range():
    image, labels = _image_and_threshold_labels()
    config = {"enabled": True, "intensity_prob": 1.0, "gamma_prob": 1.0, "noise_prob": 1.0, "blur_prob": 1.0}
    out_image, out_labels = Augmenter(config, np.random.default_rng(0))(image, labels)
    np.testing.assert_array_equal(out_labels, labels)
    assert not np.allclose(out_image, image)
    assert out_image.min() >= 0.0 and out_image.max() <= 1.0


def test_low_resolution_keeps_the_grid_and_labels_and_removes_fine_detail():
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)[None]
    labels = np.zeros((64, 64), np.uint8)
    labels[20:40, 20:40] = 1
    config = {"enabled": True, "lowres_prob": 1.0, "lowres_zoom": [0.5, 0.5]}
    out_image, out_labels = Augmenter(config, np.random.default_rng(0))(checkerboard, labels)
    np.testing.assert_array_equal(out_labels, labels)
    assert out_image.shape == checkerboard.shape
    assert checkerboard.std() > 0.45 and out_image[0, 4:-4, 4:-4].std() < 0.05  # one-pixel detail is gone
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    assert np.abs(coarser(ramp, 0.5) - ramp)[4:-4, 4:-4].max() < 0.03  # coarse structure stays where it was
    np.testing.assert_array_equal(coarser(ramp, 1.0), ramp)
    with pytest.raises(InputError, match="lowres_zoom"):
        AugmentConfig.from_dict({"lowres_zoom": [0.0, 1.0]})


def test_disabled_augmentation_is_identity_and_bad_options_fail():
    image, labels = _image_and_threshold_labels()
    out_image, out_labels = Augmenter({"enabled": False, "flip_lr": 1.0})(image, labels)
    assert out_image is image and out_labels is labels
    with pytest.raises(InputError, match="Unknown augmentation option"):
        AugmentConfig.from_dict({"mirror": 1})
    with pytest.raises(InputError, match="not a probability"):
        AugmentConfig.from_dict({"flip_lr": 2})
