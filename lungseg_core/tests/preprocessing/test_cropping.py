"""Body mask, bounding boxes, body/lung cropping and informative slices."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io.volume import Volume
from lungseg_core.preprocessing.cropping import (
    body_mask,
    bounding_box,
    crop_to_body,
    informative_slices,
    lung_bounding_box,
)
from lungseg_core.synthetic import flip_axes


def _padded_with_table(phantom) -> tuple[Volume, np.ndarray]:
    """The phantom with -3024 padding outside a circular FOV and a separate table bar below the body."""
    array = phantom.ct.array.copy()
    _, ny, nx = array.shape
    y, x = np.mgrid[0:ny, 0:nx]
    outside_fov = ((y - ny / 2) ** 2 + (x - nx / 2) ** 2) > (0.5 * nx) ** 2
    array[:, outside_fov] = -3024
    array[:, 88:90, 28:68] = 100  # table: dense, about 2% of the body, not touching it (body ends near row 82)
    return phantom.ct.with_array(array), outside_fov


def test_body_mask_excludes_padding_air_and_table(phantom):
    volume, outside_fov = _padded_with_table(phantom)
    mask = body_mask(volume)
    assert mask.dtype == bool and mask.shape == volume.shape
    assert not mask[:, outside_fov].any()
    assert not mask[:, 88:90, 28:68].any()
    assert not mask[:, :5, :].any()  # air in front of the chest
    # lungs are holes in the thresholded body: they must be filled
    assert mask[phantom.lungs > 0].mean() > 0.99
    assert mask[:, 48, 48].all()  # body centre on every slice


def test_bounding_box_with_margin_and_bounds():
    mask = np.zeros((10, 20, 30), bool)
    mask[2:4, 5:8, 25:29] = True
    assert bounding_box(mask) == (slice(2, 4), slice(5, 8), slice(25, 29))
    assert bounding_box(mask, 3) == (slice(0, 7), slice(2, 11), slice(22, 30))
    assert bounding_box(mask, (0, 1, 2)) == (slice(2, 4), slice(4, 9), slice(23, 30))
    with pytest.raises(ValueError):
        bounding_box(np.zeros((3, 3, 3), bool))


def test_crop_to_body_keeps_positions_and_drops_padding(phantom):
    volume, outside_fov = _padded_with_table(phantom)
    volume = flip_axes(volume, (True, False, True))  # non-identity direction: origin shift must follow it
    cropped, box = crop_to_body(volume, margin_mm=0.0)
    np.testing.assert_array_equal(cropped.array, volume.array[box])
    corner = np.array([[s.start for s in box]], float)
    np.testing.assert_allclose(cropped.zyx_to_lps(np.zeros((1, 3))), volume.zyx_to_lps(corner), atol=1e-6)
    assert cropped.shape[1] < volume.shape[1] and cropped.shape[2] <= volume.shape[2]
    # the body is kept whole, the table is not in the box
    assert body_mask(volume)[box].sum() == body_mask(volume).sum()
    assert box[1].stop <= 88  # table rows start at 88


def test_crop_to_body_without_body_returns_everything():
    volume = Volume(np.full((2, 8, 8), -1000, np.int16))
    cropped, box = crop_to_body(volume)
    assert cropped.shape == volume.shape and box == (slice(0, 2), slice(0, 8), slice(0, 8))


def test_lung_bounding_box_margin_in_mm(phantom):
    box = lung_bounding_box(phantom.lungs, phantom.ct, margin_mm=10.0)
    inner = bounding_box(phantom.lungs > 0)
    # spacing (x, y, z) = (3.5, 3.5, 6.0): 10 mm is 2 slices in z and 3 voxels in y/x (ceil)
    assert box[0].start == max(0, inner[0].start - 2) and box[0].stop == min(48, inner[0].stop + 2)
    assert box[1].start == inner[1].start - 3 and box[2].stop == inner[2].stop + 3
    assert phantom.lungs[box].sum() == phantom.lungs.sum()
    with pytest.raises(ValueError):
        lung_bounding_box(phantom.lungs[:-1], phantom.ct)


def test_informative_slices(phantom):
    keep = informative_slices(phantom.lungs)
    has_lung = np.array([phantom.lungs[z].any() for z in range(phantom.lungs.shape[0])])
    np.testing.assert_array_equal(keep, has_lung)
    assert keep.any() and not keep.all()  # the phantom's lungs do not reach the first slices
    strict = informative_slices(phantom.lungs, min_fraction=0.05)
    assert strict.sum() < keep.sum() and not (strict & ~keep).any()
    assert not informative_slices(np.zeros((3, 4, 4))).any()


@pytest.mark.parametrize("name", ["2", "24", "44"])
def test_real_covid_slices_cropped_to_lungs_keep_every_lesion(name):
    """8-bit COVID slices exported already cropped: the chest wall is in pieces, none may be cropped off."""
    from lungseg_core.io import read_labelmap, read_volume
    from lungseg_core.tests.conftest import shared_file

    image = read_volume(shared_file(f"covid_semiseg/train/images/{name}.jpg"))
    lesions = read_labelmap(shared_file(f"covid_semiseg/train/ggo_consolidation/{name}.png"), "infection").array
    assert image.intensity == "display" and lesions.any()
    _, box = crop_to_body(image)
    assert lesions[box].sum() == lesions.sum()


@pytest.mark.slow
def test_real_lidc_body_crop_drops_padding_and_table():
    from lungseg_core.io import read_volume
    from lungseg_core.tests.conftest import shared_file

    ct = read_volume(shared_file("lidc/LIDC-IDRI-0001.nii.gz"))
    mask = body_mask(ct)
    assert not mask[ct.array <= -2000].any()  # FOV padding
    cropped, box = crop_to_body(ct)
    assert cropped.shape[1] < ct.shape[1]  # rows above the chest and the table below are gone
    assert 0.2 < mask.mean() < 0.7
