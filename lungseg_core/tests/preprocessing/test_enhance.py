"""CLAHE and histogram equalisation on [0, 1] slices."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.preprocessing.enhance import clahe, enhance_slices, equalize_histogram


def _low_contrast_slice(seed: int = 0) -> np.ndarray:
    """Values squeezed into 0.45..0.55 with structure (a gradient and discs)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64]
    image = 0.45 + 0.05 * x / 63 + 0.04 * (((y - 20) ** 2 + (x - 40) ** 2) < 100)
    return np.clip(image + rng.normal(0, 0.002, image.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("enhance", [clahe, equalize_histogram])
def test_enhancement_raises_contrast_and_keeps_range(enhance):
    image = _low_contrast_slice()
    out = enhance(image)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.std() > 2 * image.std()
    # monotone-ish: the bright disc stays brighter than its surroundings
    disc = ((np.mgrid[0:64, 0:64][0] - 20) ** 2 + (np.mgrid[0:64, 0:64][1] - 40) ** 2) < 100
    assert out[disc].mean() > out[~disc].mean()


def test_histeq_spreads_values_over_unit_range():
    out = equalize_histogram(_low_contrast_slice())
    assert out.min() < 0.05 and out.max() > 0.95


def test_histeq_mask_uses_histogram_inside_mask():
    image = np.zeros((64, 64), np.float32)
    mask = np.zeros_like(image, bool)
    mask[16:48, 16:48] = True
    image[16:48, 16:48] = _low_contrast_slice()[16:48, 16:48]
    with_mask = equalize_histogram(image, mask=mask)
    without = equalize_histogram(image)
    # without a mask half the histogram is the black background, squeezing the body into the top half
    assert np.ptp(with_mask[mask]) > np.ptp(without[mask]) + 0.2


@pytest.mark.parametrize("enhance", [clahe, equalize_histogram])
def test_constant_slice_is_unchanged(enhance):
    image = np.full((32, 32), 0.3, np.float32)
    np.testing.assert_array_equal(enhance(image), image)


def test_enhance_slices_per_slice_and_methods():
    stack = np.stack([_low_contrast_slice(0), _low_contrast_slice(1) * 0.5])
    np.testing.assert_array_equal(enhance_slices(stack, "none"), stack)
    out = enhance_slices(stack, "clahe")
    assert out.shape == stack.shape and out.dtype == np.float32
    for z in range(2):
        np.testing.assert_allclose(out[z], clahe(stack[z]), atol=1e-6)
    np.testing.assert_allclose(enhance_slices(stack, "histeq")[1], equalize_histogram(stack[1]), atol=1e-6)
    with pytest.raises(ValueError, match="clahe"):
        enhance_slices(stack, "sharpen")
    with pytest.raises(ValueError):
        clahe(stack)
