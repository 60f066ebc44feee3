"""Faulty and unusual volume files: infinite voxels, 4D series, sheared grids, tiny and huge volumes."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from lungseg_core.errors import InputError
from lungseg_core.io import read_volume
from lungseg_core.io.readers import available_memory_bytes


def small_ct(shape=(4, 8, 8)):
    array = np.full(shape, -1000.0, dtype=np.float32)
    array[:, 2:6, 2:6] = 40.0
    return array


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_infinite_voxels_are_refused(tmp_path, suffix):
    array = small_ct()
    array[1, 2, 3] = np.inf
    array[2, 2, 3] = -np.inf
    path = tmp_path / f"inf{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(InputError, match="2 NaN or infinite voxel"):
        read_volume(path)


def test_4d_with_one_time_point_is_a_volume_and_with_several_is_refused(tmp_path):
    frame = sitk.GetImageFromArray(small_ct())
    frame.SetSpacing((0.7, 0.8, 2.5))
    sitk.WriteImage(sitk.JoinSeries([frame]), str(tmp_path / "one.nrrd"))
    volume = read_volume(tmp_path / "one.nrrd")
    assert volume.shape == (4, 8, 8) and volume.spacing == pytest.approx((0.7, 0.8, 2.5))
    sitk.WriteImage(sitk.JoinSeries([frame, frame, frame]), str(tmp_path / "three.nii.gz"))
    with pytest.raises(InputError, match="4D series with 3 time points") as info:
        read_volume(tmp_path / "three.nii.gz")
    assert "extract one time point" in str(info.value)


def test_sheared_grid_is_explained_not_called_corrupt(tmp_path):
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[0, 2] = 0.9  # slices shifted sideways: a tilted gantry
    nibabel.save(nibabel.Nifti1Image(small_ct().T.astype(np.int16), affine), str(tmp_path / "tilt.nii.gz"))
    with pytest.raises(InputError, match="sheared") as info:
        read_volume(tmp_path / "tilt.nii.gz")
    assert "corrupt" not in str(info.value) and "resample" in str(info.value)


@pytest.mark.parametrize("slices", [1, 2, 3])
def test_tiny_volumes_are_read(tmp_path, slices):
    sitk.WriteImage(sitk.GetImageFromArray(small_ct((slices, 8, 8))), str(tmp_path / "tiny.nii.gz"))
    volume = read_volume(tmp_path / "tiny.nii.gz")
    assert volume.shape == (slices, 8, 8)
    assert volume.is_2d == (slices == 1)  # one slice is handled like a 2D image (2D models, in-plane metrics)


def test_huge_header_is_refused_before_any_pixel_is_read(tmp_path, monkeypatch):
    """A header declaring 8192^3 16-bit voxels (1 TiB) must not make us allocate: the check reads the header only."""
    (tmp_path / "huge.raw").write_bytes(b"\0" * 64)
    (tmp_path / "huge.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 8192 8192 8192\nspacings: 0.5 0.5 0.5\n"
        "encoding: raw\nendian: little\ndata file: huge.raw\n")
    monkeypatch.setenv("LUNGSEG_MAX_MEMORY_GB", "64")

    def must_not_read(*args, **kwargs):
        raise AssertionError("pixels were read before the size check")

    monkeypatch.setattr(sitk, "ReadImage", must_not_read)
    with pytest.raises(InputError, match="too large for this machine") as info:
        read_volume(tmp_path / "huge.nhdr")
    message = str(info.value)
    assert "8192x8192x8192 voxels need about 2048 GiB" in message and "64 GiB is available" in message
    assert "resample" in message and "LUNGSEG_MAX_MEMORY_GB" in message


def test_memory_limit_counts_the_callers_working_memory(tmp_path, monkeypatch):
    sitk.WriteImage(sitk.GetImageFromArray(small_ct((16, 64, 64))), str(tmp_path / "ct.nrrd"))  # 65 k voxels
    monkeypatch.setenv("LUNGSEG_MAX_MEMORY_GB", str(1.0 / 1024))  # 1 MiB
    assert read_volume(tmp_path / "ct.nrrd").shape == (16, 64, 64)  # 2 float32 copies: 0.5 MiB fits
    with pytest.raises(InputError, match="too large"):
        read_volume(tmp_path / "ct.nrrd", working_bytes_per_voxel=64)  # + 4 MiB for segmentation does not


def test_available_memory_is_known_on_this_machine(monkeypatch):
    monkeypatch.delenv("LUNGSEG_MAX_MEMORY_GB", raising=False)
    available = available_memory_bytes()
    assert available is None or available > 0
    monkeypatch.setenv("LUNGSEG_MAX_MEMORY_GB", "2")
    assert available_memory_bytes() == 2 * 2**30


def test_colour_volume_is_refused(tmp_path):
    rgb = sitk.GetImageFromArray(np.zeros((4, 8, 8, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.nrrd"))
    with pytest.raises(InputError, match="3 values per voxel") as info:
        read_volume(tmp_path / "rgb.nrrd")
    assert "grayscale" in str(info.value)
