"""DICOM series folders: find every series below a folder and read the largest CT series."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume


@dataclass
class DicomSeries:
    uid: str
    folder: Path
    files: list[str]
    modality: str = ""
    description: str = ""


def find_series(folder: Path) -> list[DicomSeries]:
    """All image series in ``folder`` and its sub-folders (one GDCM scan per folder)."""
    import SimpleITK as sitk

    series: list[DicomSeries] = []
    for sub in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        try:
            uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(sub)) or ()
        except RuntimeError:
            continue
        for uid in uids:
            files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(sub), uid))
            if files:
                series.append(DicomSeries(uid, sub, files, *_modality_and_description(files[0])))
    return series


def _modality_and_description(file: str) -> tuple[str, str]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return "", ""
    get = lambda tag: reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""  # noqa: E731
    return get("0008|0060"), get("0008|103e")


def choose_series(series: list[DicomSeries]) -> DicomSeries:
    """The CT series with the most slices (any modality if no series says CT)."""
    ct = [s for s in series if s.modality.upper() == "CT"] or series
    return max(ct, key=lambda s: len(s.files))


def read_dicom_series(folder: Path) -> Volume:
    import SimpleITK as sitk

    series = find_series(folder)
    if not series:
        raise InputError(
            f"No readable DICOM series found in folder '{folder}'",
            "point to the folder holding the CT's .dcm files (or give a NIfTI/NRRD file)",
        )
    chosen = choose_series(series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen.files)
    try:
        image = reader.Execute()
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as exc:
        raise InputError(
            f"Cannot read DICOM series {chosen.uid} in '{chosen.folder}' ({str(exc).strip().splitlines()[-1][:120]})",
            "check that the series is complete and not compressed with an unsupported codec",
        ) from None
    volume = Volume(
        array.astype(np.int16) if np.issubdtype(array.dtype, np.integer) and array.min() >= -32768 and array.max() < 32768 else array,
        image.GetSpacing(),
        image.GetOrigin(),
        np.array(image.GetDirection()).reshape(3, 3),
        is_2d=array.shape[0] == 1,
    )
    volume.metadata["dicom_series"] = {
        "series_instance_uid": chosen.uid,
        "folder": str(chosen.folder),
        "slices": len(chosen.files),
        "modality": chosen.modality,
        "description": chosen.description,
        "series_found": len(series),
    }
    return volume
