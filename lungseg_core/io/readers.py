"""Read CT volumes and reference labelmaps from the formats users have.

Every failure is an :class:`InputError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume

VOLUME_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
KNOWN_SUFFIXES = VOLUME_SUFFIXES + IMAGE_SUFFIXES
NIFTI1_MIN_OFFSET = 352  # 348-byte header + 4-byte extension flag
NIFTI_EXTENSION_SLACK = 1 << 20
READ_COPIES = 2  # while reading, ITK's pixel buffer and numpy's copy of it exist together
MEMORY_LIMIT_ENV = "LUNGSEG_MAX_MEMORY_GB"  # overrides the available-memory figure (e.g. on machines with swap)
_FORMATS_HINT = "NIfTI (.nii/.nii.gz), NRRD/NHDR, MHA/MHD, a DICOM series folder or a PNG/JPG slice"


def case_name(path: str | os.PathLike) -> str:
    """Input name without its (possibly double) extension: ``/a/ct_01.nii.gz`` -> ``ct_01``."""
    path = Path(path)
    name = path.name
    for suffix in KNOWN_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.is_file() else name


def is_image_file(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def read_volume(path: str | os.PathLike, working_bytes_per_voxel: int = 0) -> Volume:
    """Read a CT as a :class:`Volume`: a file, a DICOM series folder, or a 2D PNG/JPG slice.

    Before any pixel is read, the size in the header is checked against the available memory (see
    :func:`check_memory`); ``working_bytes_per_voxel`` adds what the caller will need per voxel afterwards.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Input '{path}' does not exist", "check the path and spelling")
    if path.is_dir():
        from lungseg_core.io.dicom import read_dicom_series

        volume = read_dicom_series(path, working_bytes_per_voxel)
    else:
        _check_not_empty(path)
        if is_image_file(path):
            volume = _read_image_2d(path)
        else:
            volume = _read_volume_file(path, working_bytes_per_voxel)
    volume.name = case_name(path)
    volume.metadata.setdefault("source", str(path))
    check_finite(volume, path)
    return volume


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise InputError(f"Input '{path}' is an empty file (0 bytes)", "copy or export the image again")


def _read_volume_file(path: Path, working_bytes_per_voxel: int = 0) -> Volume:
    import SimpleITK as sitk

    if not path.name.lower().endswith(VOLUME_SUFFIXES):
        raise InputError(f"'{path.name}' is not a supported image type", f"give {_FORMATS_HINT}")
    try:
        _check_complete(path)
        check_memory_from_header(path, path, working_bytes_per_voxel)
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
    except (RuntimeError, EOFError, OSError) as exc:
        raise _unreadable(path, exc) from None
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(
            f"'{path.name}' has {image.GetNumberOfComponentsPerPixel()} values per voxel (colour or vector image)",
            "give a single-channel grayscale CT",
        )
    if np.issubdtype(array.dtype, np.floating) and path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_nan(path)
    return _volume_from_sitk_array(image, array, path)


def _unreadable(path: Path, exc: BaseException) -> InputError:
    reason = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else exc.__class__.__name__
    if "orthonormal" in reason:
        return InputError(
            f"'{path.name}' has a sheared (non-orthogonal) voxel grid, e.g. from a tilted CT gantry",
            "resample it to an orthogonal grid first (e.g. Slicer's Resample Scalar/Vector/DWI Volume, "
            "or dcm2niix, which corrects gantry tilt)",
        )
    return InputError(
        f"Cannot read '{path.name}': the file is corrupt, truncated or not an image ({reason})",
        "re-export or re-copy the file; check that the download completed",
    )


def check_complete(path: str | os.PathLike) -> None:
    """The integrity check :func:`read_volume` makes before reading a file's pixels, for readers that skip it
    (3D Slicer's zero-fills a truncated NIfTI without an error); raises the same :class:`InputError`."""
    path = Path(path)
    try:
        _check_complete(path)
    except EOFError as exc:
        raise _unreadable(path, exc) from None


def check_memory_from_header(shown_as: Path, header_file: str | Path, working_bytes_per_voxel: int = 0,
                             slices: int | None = None) -> None:
    """:func:`check_memory` from an image header without reading pixels; ``slices`` overrides the depth
    (a DICOM series: one file's header, one slice per file). Raises RuntimeError for an unreadable header."""
    import SimpleITK as sitk

    header = sitk.ImageFileReader()
    header.SetFileName(str(header_file))
    header.ReadImageInformation()
    size = header.GetSize() if slices is None else (*header.GetSize()[:2], slices)
    check_memory(shown_as, size, pixel_bytes(header.GetPixelID()) * header.GetNumberOfComponents(),
                 working_bytes_per_voxel)


def pixel_bytes(pixel_id: int) -> int:
    """Bytes of one component of an ITK pixel type (from a 1-voxel image: ITK has no direct query)."""
    import SimpleITK as sitk

    return int(sitk.GetArrayViewFromImage(sitk.Image([1, 1], pixel_id)).itemsize)


def available_memory_bytes() -> int | None:
    """Memory this process can still use: ``LUNGSEG_MAX_MEMORY_GB`` if set, else what the system has
    available (psutil, /proc/meminfo's MemAvailable, or free pages); None when unknown."""
    if os.environ.get(MEMORY_LIMIT_ENV):
        return int(float(os.environ[MEMORY_LIMIT_ENV]) * 2**30)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(path: Path, size_xyz, bytes_per_voxel: int, working_bytes_per_voxel: int = 0) -> None:
    """Refuse an image too large for this machine before allocating it, saying how much it needs.

    ``size_xyz`` comes from the header; reading needs :data:`READ_COPIES` copies of the pixels, the caller
    ``working_bytes_per_voxel`` more (segmentation: see ``lungseg_core.inference.pipeline``).
    """
    voxels = int(np.prod([int(s) for s in size_xyz], dtype=np.float64))
    needed = voxels * (READ_COPIES * bytes_per_voxel + working_bytes_per_voxel)
    available = available_memory_bytes()
    if available is None or needed <= available:
        return
    size = "x".join(str(int(s)) for s in size_xyz)
    raise InputError(
        f"'{Path(path).name}' is too large for this machine: {size} voxels need about {_gib(needed)} GiB "
        f"of memory but {_gib(available)} GiB is available",
        "crop it to the chest or resample it to fewer voxels (e.g. 1 mm pixels, 2-3 mm slices), free memory, "
        f"or use a machine with at least {np.ceil(needed / 2**30):.0f} GiB "
        f"({MEMORY_LIMIT_ENV} overrides the available figure, e.g. with swap)",
    )


def _gib(size_bytes: float) -> str:
    gib = size_bytes / 2**30
    return f"{gib:.0f}" if gib >= 10 else f"{gib:.2g}"


def _check_nifti_nan(path: Path) -> None:
    """ITK's NIfTI reader silently turns NaN into 0, so count NaNs in the raw float payload ourselves."""
    import nibabel

    refuse_non_finite(np.asanyarray(nibabel.load(str(path)).dataobj), path)


def _check_complete(path: Path) -> None:
    """Refuse truncated NIfTI: ITK zero-fills a payload that ends early instead of failing.

    The header says how many bytes the image has; an uncompressed file must be that long, and a gzip
    file's trailer records its uncompressed size (modulo 2**32). A truncated gzip ends mid-stream, so its
    last four bytes are payload, not that size. No second decompression of the whole file is needed.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    import nibabel

    try:
        header = nibabel.load(str(path)).header
    except Exception as exc:  # nibabel raises several kinds for non-NIfTI bytes
        raise EOFError(f"not a readable NIfTI header ({exc.__class__.__name__})") from None
    # some writers leave vox_offset 0; a single-file NIfTI's payload never starts before byte 352
    offset = max(int(header.get_data_offset()), NIFTI1_MIN_OFFSET)
    expected = offset + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    if name.endswith(".gz"):
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            size = int.from_bytes(handle.read(4), "little")
        # header extensions may add a little; a cut stream's last bytes are payload, almost never in range
        complete = 0 <= size - expected % 2**32 <= NIFTI_EXTENSION_SLACK
    else:
        complete = path.stat().st_size >= expected
    if not complete:
        raise EOFError("file shorter than its header says")


def _volume_from_sitk_array(image, array: np.ndarray, path: Path) -> Volume:
    """Wrap an ITK image as a Volume; 2D images and 4D images with one time point become volumes."""
    dim = image.GetDimension()
    if dim == 2:
        spacing = tuple(image.GetSpacing()) + (1.0,)
        origin = tuple(image.GetOrigin()) + (0.0,)
        direction = np.eye(3)
        direction[:2, :2] = np.array(image.GetDirection()).reshape(2, 2)
        return Volume(array[np.newaxis], spacing, origin, direction, is_2d=True)
    if dim == 4:
        if array.shape[0] != 1:
            raise InputError(
                f"'{path.name}' is a 4D series with {array.shape[0]} time points",
                "give a single 3D CT (extract one time point first)",
            )
        array = array[0]
        spacing = tuple(image.GetSpacing())[:3]
        origin = tuple(image.GetOrigin())[:3]
        direction = np.array(image.GetDirection()).reshape(4, 4)[:3, :3]
        return Volume(array, spacing, origin, direction)
    if dim != 3:
        raise InputError(f"'{path.name}' has {dim} dimensions", "give a 3D CT or a 2D slice")
    is_2d = array.shape[0] == 1
    return Volume(
        array,
        image.GetSpacing(),
        image.GetOrigin(),
        np.array(image.GetDirection()).reshape(3, 3),
        is_2d=is_2d,
    )


def _read_image_2d(path: Path) -> Volume:
    """A PNG/JPG slice exported in a lung window: 8-bit display values, no physical spacing."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGB", "RGBA", "P", "LA"):
                gray = np.asarray(image.convert("L"), dtype=np.float32)
            elif image.mode in ("I;16", "I;16B", "I", "F"):
                gray = np.asarray(image, dtype=np.float32)
            else:
                gray = np.asarray(image.convert("L"), dtype=np.float32)
    except Image.DecompressionBombError as exc:  # PIL's guard against images that would fill the memory
        raise InputError(f"'{path.name}' is too large for a CT slice ({exc})", "export the slice at its original size") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(
            f"Cannot read '{path.name}' as an image ({exc.__class__.__name__})",
            "re-export the slice as PNG or JPG",
        ) from None
    if gray.ndim != 2:
        raise InputError(f"'{path.name}' is not a 2D grayscale image", "export a single grayscale slice")
    intensity = "display" if gray.max() <= 255 else "hu"
    volume = Volume(gray[np.newaxis], intensity=intensity, is_2d=True)
    volume.metadata["spacing_known"] = False
    return volume


def check_finite(volume: Volume, path: Path | str) -> None:
    refuse_non_finite(volume.array, path)


def refuse_non_finite(values: np.ndarray, path: Path | str) -> None:
    """NaN or infinite voxels make every downstream number meaningless: refuse them up front."""
    if np.issubdtype(values.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise InputError(
                f"'{Path(path).name}' contains {bad} NaN or infinite voxel(s)",
                "fix the export (or replace them, e.g. with -1024 HU) and run again",
            )


MAX_LABEL_VALUE = 255  # labelmaps are uint8: larger or negative values are not labels (a CT given as a mask)
MAX_INDEX_IN_GREY_MASK = 10  # grey PNG masks with values up to this hold label indices (0 bg, 1, 2, ...)
BINARY_MASK_VALUE = 255  # 0/255 masks (how many tools export binary masks) mean 0/1


def read_labelmap(path: str | os.PathLike, task: str = "lungs") -> Volume:
    """Read a reference labelmap in the lungseg convention for ``task`` (``lungs`` or ``infection``).

    Accepts labelmap volumes (values already in our convention), Slicer ``.seg.nrrd`` (segments matched
    by name or terminology) and 2D PNG masks (palette indices, grey indices 0..10, or 0/255 binary).
    0/255 binary masks become 0/1 in every format. Values that no uint8 labelmap can hold (negative,
    above 255) are refused instead of being wrapped: such a file is a CT or a probability map, not a mask.
    """
    path = Path(path)
    if path.name.lower().endswith(".seg.nrrd"):
        from lungseg_core.io.segmentation_files import read_seg_nrrd_labelmap

        return read_seg_nrrd_labelmap(path, task)
    volume = read_volume(path)
    if is_image_file(path):
        array = _png_mask_labels(path)[np.newaxis]
    else:
        array = _binary_as_one(_label_values(volume.array, path))
    return volume.with_array(array, intensity="hu")


def _label_values(array: np.ndarray, path: Path) -> np.ndarray:
    """The voxels as uint8 labels; values outside 0..255 are refused (a uint8 cast would wrap them)."""
    low, high = float(array.min(initial=0)), float(array.max(initial=0))
    if low < 0 or high > MAX_LABEL_VALUE:
        raise InputError(
            f"'{path.name}' holds values {low:g}..{high:g}, which are not label values (0..{MAX_LABEL_VALUE}): "
            "it looks like an image, not a mask",
            "give the mask (labelmap) file, not the CT",
        )
    return np.rint(array).astype(np.uint8)


def present_values(labels: np.ndarray) -> set[int]:
    """The values present in a label array (all within 0..255), counted slice by slice: a whole-CT int64 copy
    (what ``np.bincount(labels.ravel())`` or ``np.unique`` make) would cost 8 bytes per voxel."""
    labels = np.asarray(labels)
    counts = np.zeros(MAX_LABEL_VALUE + 1, np.int64)
    for plane in labels.reshape(labels.shape[0], -1):
        plane = np.rint(plane) if plane.dtype.kind == "f" else plane  # as read_labelmap rounds float masks
        counts += np.bincount(plane.astype(np.intp), minlength=counts.size)
    return set(np.flatnonzero(counts).tolist())


def _binary_as_one(labels: np.ndarray) -> np.ndarray:
    """A mask holding only 0 and 255 is binary: 255 becomes 1 (never a label index of its own)."""
    if labels.max(initial=0) == BINARY_MASK_VALUE and not np.any((labels > 0) & (labels < BINARY_MASK_VALUE)):
        return (labels > 0).astype(np.uint8)
    return labels


def _png_mask_labels(path: Path) -> np.ndarray:
    """Label indices of a 2D mask image, decided by the values present.

    Palette PNGs carry indices. Grey masks: only 0 and 255 is binary (0/1); values up to
    :data:`MAX_INDEX_IN_GREY_MASK` are indices (``cv2.imwrite`` of a labelmap); a lossy JPEG mask is
    binarised at half range (compression smears 0/255 edges). Other grey values are ambiguous: refused.
    """
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":
            return np.asarray(image, dtype=np.uint8)
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
    gray = _binary_as_one(gray)
    if gray.max(initial=0) <= MAX_INDEX_IN_GREY_MASK:
        return gray
    if path.name.lower().endswith((".jpg", ".jpeg")):
        return (gray > 127).astype(np.uint8)
    values = np.flatnonzero(np.bincount(gray.ravel()))
    shown = ", ".join(str(v) for v in values[:8]) + (", ..." if values.size > 8 else "")
    raise InputError(
        f"Mask '{path.name}' holds grey values {shown}: neither a 0/255 binary mask nor label indices "
        f"0..{MAX_INDEX_IN_GREY_MASK}",
        "save masks as 0/255 binary or as label indices (0 background, 1, 2, ...) in a grey or palette PNG",
    )
