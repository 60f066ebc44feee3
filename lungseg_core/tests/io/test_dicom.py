"""DICOM folders built in tmp_path: several series, a missing slice, duplicate slices, the size check."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungseg_core.errors import InputError
from lungseg_core.io import read_volume


def write_series(folder, slices, uid, modality="CT", description="chest", spacing=(0.8, 0.8, 2.5), z_offset=0.0,
                 array=None):
    """One DICOM file per slice with the tags that GDCM groups and sorts by; ``array`` (z, y, x) replaces the
    default 16x16 block (``slices`` is then its depth)."""
    folder.mkdir(parents=True, exist_ok=True)
    if array is None:
        array = np.full((slices, 16, 16), -1000, np.int16)
        array[:, 4:12, 4:12] = 40
    slices = len(array)
    volume = sitk.GetImageFromArray(array)
    volume.SetSpacing(spacing)
    volume.SetOrigin((0.0, 0.0, z_offset))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(slices):
        image = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0008|0060": modality, "0020|000e": uid, "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
                "0008|103e": description, "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0013": str(k + 1),
                "0020|0032": "\\".join(f"{v:g}" for v in position)}
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        files.append(folder / f"{uid.rsplit('.', 1)[-1]}_{k:03d}.dcm")
        writer.SetFileName(str(files[-1]))
        writer.Execute(image)
    return files


def test_series_is_read_in_hu_with_its_geometry(tmp_path):
    write_series(tmp_path / "ct", 6, "1.2.3.100")
    volume = read_volume(tmp_path / "ct")
    assert volume.shape == (6, 16, 16) and volume.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert volume.array.min() == -1000 and volume.array.max() == 40
    assert volume.metadata["dicom_series"]["series_instance_uid"] == "1.2.3.100"


def test_several_series_the_largest_ct_series_is_used_and_named(tmp_path):
    write_series(tmp_path / "study", 5, "1.2.3.200", description="scout")
    write_series(tmp_path / "study", 9, "1.2.3.300", description="lung 2.5 mm")
    write_series(tmp_path / "study" / "other", 12, "1.2.3.400", modality="OT", description="secondary capture")
    volume = read_volume(tmp_path / "study")
    series = volume.metadata["dicom_series"]
    assert volume.shape[0] == 9 and series["series_instance_uid"] == "1.2.3.300"  # CT beats a larger non-CT series
    assert series["series_found"] == 3 and series["description"] == "lung 2.5 mm"


def test_missing_slice_is_refused_with_the_gap(tmp_path):
    files = write_series(tmp_path / "ct", 8, "1.2.3.500")
    files[4].unlink()
    with pytest.raises(InputError, match="missing slices") as info:
        read_volume(tmp_path / "ct")
    message = str(info.value)
    assert "about 1 slice(s) absent" in message and "5.00 mm gap" in message and "slice step is 2.50 mm" in message
    assert "complete series" in message


def test_duplicate_slice_positions_are_refused(tmp_path):
    write_series(tmp_path / "ct", 6, "1.2.3.600")
    write_series(tmp_path / "copy", 6, "1.2.3.600")  # a second acquisition under the same series UID
    for path in (tmp_path / "copy").iterdir():
        path.rename(tmp_path / "ct" / f"b_{path.name}")
    with pytest.raises(InputError, match="same position"):
        read_volume(tmp_path / "ct")


def test_dicom_series_size_is_checked_before_reading(tmp_path, monkeypatch):
    write_series(tmp_path / "ct", 6, "1.2.3.700")
    monkeypatch.setenv("LUNGSEG_MAX_MEMORY_GB", str(1e-6))  # about 1 kB
    with pytest.raises(InputError, match="16x16x6 voxels need about"):
        read_volume(tmp_path / "ct")


def test_dicom_files_are_told_by_content_not_name(tmp_path):
    from lungseg_core.io.dicom import gdcm_finds_series, is_dicom_file

    slice_file = write_series(tmp_path / "ct", 3, "1.2.3.800")[0]
    no_suffix = slice_file.rename(tmp_path / "ct" / "IM0001")  # DICOM files often have no extension
    dicomdir = tmp_path / "DICOMDIR"  # the index of a CD export: DICOM, but no image
    dicomdir.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x02\x00UI\x14\x001.2.840.10008.1.3.10" + b"\0" * 64)
    jpg = tmp_path / "preview.dcm"  # a picture misnamed .dcm
    jpg.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 300)
    assert is_dicom_file(no_suffix) and not is_dicom_file(dicomdir) and not is_dicom_file(jpg)
    headless = tmp_path / "headless"  # no 128-byte preamble: only GDCM tells
    headless.mkdir()
    (headless / "1").write_bytes(no_suffix.read_bytes()[132:])
    assert not is_dicom_file(headless / "1") and gdcm_finds_series(headless) and not gdcm_finds_series(tmp_path)
