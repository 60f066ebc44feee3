"""DICOM series folders: find every series below a folder and read the largest CT series."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume

# A step between neighbouring slices this much larger than the usual step means slices are missing;
# 1.5 tolerates the rounding of positions in the headers and never passes a whole missing slice (2x).
GAP_FACTOR = 1.5
DICOM_MARKER = b"DICM"
# the file meta group (Media Storage SOP Class UID among it) follows the marker within the first few hundred bytes
HEADER_BYTES = 1024
MEDIA_STORAGE_DIRECTORY = rb"1\.2\.840\.10008\.1\.3\.10(?![.\d])"  # SOP class UID of a DICOMDIR


@dataclass
class DicomSeries:
    uid: str
    folder: Path
    files: list[str]
    modality: str = ""
    description: str = ""


def is_dicom_file(path: Path) -> bool:
    """A DICOM image file by its content, whatever its name: the 'DICM' marker after the 128-byte preamble of
    DICOM Part 10 files. A DICOMDIR (the index of a CD/DVD export) has it too but is no image: it must not make
    the folder above a study's series one series folder."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
    except OSError:
        return False
    return head[128:132] == DICOM_MARKER and re.search(MEDIA_STORAGE_DIRECTORY, head[132:]) is None


def gdcm_finds_series(folder: Path) -> bool:
    """Whether GDCM groups any file of ``folder`` (not its sub-folders) into a series: catches DICOM files
    written without the preamble (old ACR-NEMA style exports), at the cost of parsing every file's header."""
    import SimpleITK as sitk

    try:
        return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        return False


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


def read_dicom_series(folder: Path, working_bytes_per_voxel: int = 0) -> Volume:
    import SimpleITK as sitk

    series = find_series(folder)
    if not series:
        raise InputError(
            f"No readable DICOM series found in folder '{folder}'",
            "point to the folder holding the CT's .dcm files (or give a NIfTI/NRRD file)",
        )
    chosen = choose_series(series)
    _check_series_memory(chosen, working_bytes_per_voxel)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen.files)
    reader.MetaDataDictionaryArrayUpdateOn()  # per-slice tags, to check the slice positions below
    # ITK prints a multi-line warning for uneven slices and reads on; check_slice_positions explains instead
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = reader.Execute()
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as exc:
        raise InputError(
            f"Cannot read DICOM series {chosen.uid} in '{chosen.folder}' ({str(exc).strip().splitlines()[-1][:120]})",
            "check that the series is complete and not compressed with an unsupported codec",
        ) from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    check_slice_positions(_slice_positions(reader, len(chosen.files)), np.array(image.GetDirection()).reshape(3, 3), chosen)
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


def _check_series_memory(chosen: DicomSeries, working_bytes_per_voxel: int) -> None:
    """The memory check of :mod:`lungseg_core.io.readers`, from the first slice's header."""
    from lungseg_core.io.readers import check_memory_from_header

    try:
        check_memory_from_header(Path(chosen.folder), chosen.files[0], working_bytes_per_voxel, len(chosen.files))
    except RuntimeError:
        return  # the series reader below reports unreadable files


def _slice_positions(reader, count: int) -> list[np.ndarray] | None:
    """ImagePositionPatient (0020|0032) of every slice, or None when a slice lacks it."""
    positions = []
    for index in range(count):
        if not reader.HasMetaDataKey(index, "0020|0032"):
            return None
        try:
            positions.append(np.array([float(v) for v in reader.GetMetaData(index, "0020|0032").split("\\")[:3]]))
        except ValueError:
            return None
    return positions


def check_slice_positions(positions: list[np.ndarray] | None, direction: np.ndarray, series: DicomSeries) -> None:
    """Refuse a series with missing or duplicate slices: its volumes in mL and 3D shapes would be wrong.

    ITK stacks the slices with one spacing (that of the first two) whatever the gaps, so a missing slice
    silently moves every slice after it. Positions are projected on the slice normal (the third direction
    column) and sorted, as the reader sorts them.
    """
    if positions is None or len(positions) < 3:
        return
    heights = np.sort(np.array(positions) @ direction[:, 2])
    steps = np.diff(heights)
    step = float(np.median(steps))
    where = f"DICOM series {series.uid} in '{series.folder}'"
    if step <= 1e-3 or np.any(steps <= 1e-3 * max(step, 1.0)):
        raise InputError(
            f"{where} has several slices at the same position (duplicates, or several acquisitions under one "
            "series UID)",
            "export each acquisition as its own series, or remove the duplicate files",
        )
    gaps = np.flatnonzero(steps > GAP_FACTOR * step)
    if gaps.size:
        missing = int(sum(round(steps[i] / step) - 1 for i in gaps))
        first = gaps[0]
        raise InputError(
            f"{where} has missing slices: about {missing} slice(s) absent, e.g. a {steps[first]:.2f} mm gap after "
            f"position {heights[first]:.2f} mm where the slice step is {step:.2f} mm",
            "copy or export the complete series again (or give a NIfTI/NRRD converted from the complete series)",
        )
