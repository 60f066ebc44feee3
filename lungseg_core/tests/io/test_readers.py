"""Reading every supported input kind, and a clear one-line error for every broken one."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from lungseg_core.errors import InputError
from lungseg_core.io import case_name, read_labelmap, read_volume, write_labelmap
from lungseg_core.io.volume import Volume
from lungseg_core.synthetic import flip_axes
from lungseg_core.tests.conftest import shared_file


@pytest.mark.parametrize("name, expected", [
    ("/a/ct_01.nii.gz", "ct_01"), ("b.nrrd", "b"), ("c.seg.nrrd", "c"), ("d.mha", "d"), ("slice.PNG", "slice"),
])
def test_case_name_strips_double_extensions(name, expected):
    assert case_name(name) == expected


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_volume_round_trip_keeps_values_and_geometry(tmp_path, phantom, suffix):
    oblique = flip_axes(phantom.ct, (True, False, True))
    path = tmp_path / f"case{suffix}"
    import SimpleITK as sitk

    sitk.WriteImage(oblique.to_sitk(), str(path))
    back = read_volume(path)
    assert back.name == "case"
    assert back.same_geometry(oblique)
    np.testing.assert_array_equal(back.array, oblique.array)
    assert not back.is_2d


def test_png_slice_is_2d_display(tmp_path):
    from PIL import Image

    array = (np.arange(64 * 48).reshape(48, 64) % 256).astype(np.uint8)
    Image.fromarray(array).save(tmp_path / "slice.png")
    volume = read_volume(tmp_path / "slice.png")
    assert volume.is_2d and volume.intensity == "display" and volume.shape == (1, 48, 64)
    np.testing.assert_array_equal(volume.array[0], array)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "nope.nii.gz")


def test_empty_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="empty file") as info:
        read_volume(tmp_path / "empty.nii.gz")
    assert "\n" not in str(info.value)


def test_truncated_nifti(tmp_path, phantom):
    whole = tmp_path / "whole.nii.gz"
    write_labelmap(whole, phantom.ct, phantom.lungs)
    data = whole.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt, truncated") as info:
        read_volume(tmp_path / "cut.nii.gz")
    assert "re-copy" in str(info.value)


def test_non_image_file(tmp_path):
    (tmp_path / "notes.nii.gz").write_bytes(gzip.compress(b"this is a text file, not an image" * 20))
    with pytest.raises(InputError, match="cannot read|Cannot read"):
        read_volume(tmp_path / "notes.nii.gz")
    (tmp_path / "report.docx").write_text("hello")
    with pytest.raises(InputError, match="not a supported image type"):
        read_volume(tmp_path / "report.docx")


def test_nan_voxels_are_refused(tmp_path):
    import SimpleITK as sitk

    array = np.full((4, 8, 8), -800.0, dtype=np.float32)
    array[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match="1 NaN or infinite voxel"):
        read_volume(tmp_path / "nan.nii.gz")


def test_corrupt_png(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="Cannot read 'bad.png'"):
        read_volume(tmp_path / "bad.png")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="No readable DICOM series"):
        read_volume(tmp_path / "series")


def test_real_dicom_series_is_read_and_named(tmp_path):
    folder = shared_file("totalsegmentator_example/example_ct_dicom")
    volume = read_volume(folder)
    assert volume.shape[0] == 20 and volume.shape[1:] == (512, 512)
    assert volume.metadata["dicom_series"]["slices"] == 20
    assert volume.array.min() < -500  # rescaled to HU
    assert np.allclose(volume.spacing[:2], 0.977, atol=0.01)


def test_largest_dicom_series_is_chosen(tmp_path):
    source = shared_file("totalsegmentator_example/example_ct_dicom")
    files = sorted(p for p in Path(source).rglob("*") if p.is_file())
    (tmp_path / "big").mkdir()
    for f in files:
        shutil.copy(f, tmp_path / "big" / f.name)
    volume = read_volume(tmp_path)  # nested folder: found recursively
    assert volume.metadata["dicom_series"]["slices"] == len(files)


def test_seg_nrrd_reference_maps_lungs_by_name(ctchest4_reference, ctchest4_path):
    ct = read_volume(ctchest4_path)
    assert ctchest4_reference.same_geometry(ct)
    counts = np.bincount(ctchest4_reference.array.ravel(), minlength=3)
    assert counts[1] > 10000 and counts[2] > 10000 and len(counts) == 3
    right = ctchest4_reference.array == 1
    from lungseg_core.io import patient_left_score

    assert patient_left_score(ct, right) < patient_left_score(ct, ctchest4_reference.array == 2)


def test_png_mask_reference(tmp_path):
    from PIL import Image

    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    labels = read_labelmap(tmp_path / "m.png", "infection")
    assert labels.array.shape == (1, 20, 30) and set(np.unique(labels.array)) == {0, 1}
    assert labels.array.sum() == 75


def test_volume_rejects_non_3d():
    with pytest.raises(ValueError):
        Volume(np.zeros((4, 4)))


def test_truncated_uncompressed_nifti(tmp_path, phantom):
    import SimpleITK as sitk

    whole = tmp_path / "whole.nii"
    sitk.WriteImage(phantom.ct.to_sitk(), str(whole))
    data = whole.read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) - 1000])
    with pytest.raises(InputError, match="corrupt, truncated"):
        read_volume(tmp_path / "cut.nii")
    assert read_volume(whole).shape == phantom.ct.shape


def test_labelmap_values_no_uint8_can_hold_are_refused_not_wrapped(tmp_path, phantom):
    """A CT given as a mask (HU -1000..) must not turn into 'labels' through a uint8 cast."""
    import SimpleITK as sitk

    sitk.WriteImage(phantom.ct.to_sitk(), str(tmp_path / "ct_as_mask.nii.gz"))
    with pytest.raises(InputError, match="holds values -?[0-9]+..[0-9]+, which are not label values .0..255.") as info:
        read_labelmap(tmp_path / "ct_as_mask.nii.gz")
    assert "not the CT" in str(info.value)


def test_binary_0_255_volume_mask_reads_as_0_1(tmp_path, phantom):
    write_labelmap(tmp_path / "m.nii.gz", phantom.ct, (phantom.lungs > 0).astype(np.uint8) * 255)
    labels = read_labelmap(tmp_path / "m.nii.gz", "infection").array
    np.testing.assert_array_equal(labels, (phantom.lungs > 0).astype(np.uint8))


def test_grey_png_masks_are_read_by_the_values_present(tmp_path):
    """0..3 are label indices (a cv2/PIL export of MedSeg masks), 0/255 is binary, anything else is refused."""
    from PIL import Image

    indices = np.zeros((20, 30), np.uint8)
    indices[2:5, 2:5], indices[6:9, 6:9], indices[10:12, 10:12] = 1, 2, 3
    Image.fromarray(indices, mode="L").save(tmp_path / "indices.png")
    np.testing.assert_array_equal(read_labelmap(tmp_path / "indices.png", "infection").array[0], indices)
    Image.fromarray((indices > 0).astype(np.uint8) * 255, mode="L").save(tmp_path / "binary.png")
    np.testing.assert_array_equal(read_labelmap(tmp_path / "binary.png").array[0], indices > 0)
    Image.fromarray(indices * 60, mode="L").save(tmp_path / "grey.png")
    with pytest.raises(InputError, match="Mask 'grey.png' holds grey values 0, 60, 120, 180: neither"):
        read_labelmap(tmp_path / "grey.png")
