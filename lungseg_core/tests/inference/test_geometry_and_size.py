"""Unusual but valid inputs: tiny volumes (1-3 slices), anisotropic voxels, oblique (rotated) grids."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungseg_core.inference import Segmenter, segment_case
from lungseg_core.io import read_volume
from lungseg_core.io.volume import Volume
from lungseg_core.models import build_model, zoo
from lungseg_core.synthetic import make_chest_phantom
from lungseg_core.tests.conftest import dice
from lungseg_core.tests.models.test_zoo import save_tiny, tiny_card


@pytest.fixture(scope="module")
def phantom():
    return make_chest_phantom(shape=(24, 64, 64), spacing=(5.0, 5.0, 12.0), ggo=False, consolidation=False)


def tiny_ct(phantom, slices):
    middle = phantom.ct.shape[0] // 2
    return Volume(phantom.ct.array[middle:middle + slices], phantom.ct.spacing), phantom.lungs[middle:middle + slices]


def test_networks_pad_tiny_volumes(tmp_path, phantom):
    card_2d, _ = save_tiny(tmp_path, context=1)  # 2.5D: each slice with one neighbour on each side
    segmenter = Segmenter(str(card_2d), "lungs", device="cpu")
    for slices in (1, 2, 3):
        ct, _ = tiny_ct(phantom, slices)
        labels = segmenter.predict(ct)
        assert labels.shape == ct.shape and set(np.unique(labels)) <= {0, 1, 2}
    card = tiny_card(name="tiny3d")
    card.update(architecture="unet3d", architecture_kwargs={"base_filters": 4}, in_channels=1, spatial_dims=3,
                patch_size=[16, 32, 32])
    card_3d = zoo.save_model_package(build_model("unet3d", in_channels=1, num_classes=3, base_filters=4), card, tmp_path)
    ct, _ = tiny_ct(phantom, 2)  # far thinner than the 16-slice patch
    assert Segmenter(str(card_3d), "lungs", device="cpu").predict(ct).shape == ct.shape


@pytest.mark.parametrize("slices", [1, 2, 3])
def test_tiny_volumes_are_segmented_in_their_own_grid(tmp_path, phantom, slices):
    ct, truth = tiny_ct(phantom, slices)
    path = tmp_path / "tiny.nii.gz"
    sitk.WriteImage(ct.to_sitk(), str(path))
    report = slices == 1  # the report's views of a single slice; the others skip the slow picture
    outcome = segment_case(path, tmp_path / "out", lung_model="threshold", infection_model="threshold", report=report)
    lungs = read_volume(outcome.outputs["lungs"])
    assert lungs.shape == ct.shape and ("report" in outcome.outputs) == report
    assert min(dice(lungs.array == k, truth == k) for k in (1, 2)) > 0.8


def rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    z, x = np.deg2rad(degrees_z), np.deg2rad(degrees_x)
    about_z = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return about_z @ about_x


@pytest.mark.parametrize("suffix, shape, spacing, direction", [
    (".nii.gz", (12, 80, 80), (4.0, 4.0, 25.0), np.eye(3)),      # anisotropic: slices 6x thicker than pixels
    (".nii.gz", (24, 64, 64), (5.0, 5.0, 12.0), rotation(20, 15)),  # oblique grid (NIfTI sform)
    (".nrrd", (24, 64, 96), (3.3, 5.0, 12.0), rotation(-25, 0)),    # oblique, anisotropic in-plane
])
def test_anisotropic_and_oblique_grids_keep_geometry_and_sides(tmp_path, suffix, shape, spacing, direction):
    phantom = make_chest_phantom(shape=shape, spacing=spacing, ggo=False, consolidation=False)
    ct = Volume(phantom.ct.array, spacing, (12.5, -40.0, 300.0), direction)
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(ct.to_sitk(), str(path))
    outcome = segment_case(path, tmp_path / "out", task="lungs", lung_model="threshold")
    lungs = read_volume(outcome.outputs["lungs"])
    assert lungs.same_geometry(ct)
    # a rotation of 15-25 degrees keeps the patient's right lung on the right: labels follow the truth
    assert min(dice(lungs.array == k, phantom.lungs == k) for k in (1, 2)) > 0.9
