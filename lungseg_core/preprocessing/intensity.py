"""Intensity kind detection (Hounsfield units vs 8-bit display images) and the lung window.

Why a lung window and not the seed paper's soft-tissue clip: the seed method clipped CT to -125..275 HU.
That window is for mediastinum and abdomen; every value below -125 HU becomes the same number, so normal
lung parenchyma (about -850 HU), emphysema, vessels' partial volume and ground-glass opacity (about
-700..-300 HU) all collapse to one grey level and the network cannot see the lung texture it has to
segment. The standard radiological lung window W1500/L-600 (-1350..150 HU) keeps air, parenchyma, GGO and
consolidation (0..100 HU) apart, and is also the window in which the 8-bit public COVID slices were
exported, so HU volumes and display images land on comparable [0, 1] values.
"""

from __future__ import annotations

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume

LUNG_WINDOW: tuple[float, float] = (-1350.0, 150.0)  # W1500 / L-600 in HU

# A CT in HU always contains air (outside the body, in the lungs and airways): about -1000 HU.
_AIR_PRESENT_HU = -500.0
# Raw 12-bit scanner values (before RescaleIntercept -1024): air near 0, soft tissue near 1024.
_RAW_CT_MAX = 4096.0
_SAMPLE_VOXELS = 1_000_000  # percentiles on a strided sample: fast on 512x512x500 volumes
# 8-bit values a little outside 0..255 come from resampling 0-255 exports with overshooting kernels (cubic,
# Lanczos); anything further out is another kind of data (HU CT has air near -1000).
DISPLAY_TOLERANCE = 5.0


def _sample(array: np.ndarray) -> np.ndarray:
    """A strided subsample of at most about ``_SAMPLE_VOXELS`` values (percentiles need no more)."""
    array = np.asarray(array)
    step = max(1, int(np.ceil((array.size / _SAMPLE_VOXELS) ** (1.0 / max(array.ndim, 1)))))
    return array[(slice(None, None, step),) * array.ndim].ravel()


def intensity_summary(array: np.ndarray) -> dict:
    """min, max, 1st/99th percentiles and the fraction of voxels below -900 (air in HU), for messages."""
    array = np.asarray(array)
    sample = _sample(array).astype(np.float64)
    p1, p99 = np.percentile(sample, [1, 99]) if sample.size else (np.nan, np.nan)
    return {
        "min": float(array.min()),
        "max": float(array.max()),
        "p1": float(p1),
        "p99": float(p99),
        "fraction_below_-900": float(np.mean(sample < -900)) if sample.size else 0.0,
    }


def _describe(summary: dict) -> str:
    return (
        f"values {summary['min']:g}..{summary['max']:g} (1st-99th percentile {summary['p1']:g}..{summary['p99']:g}, "
        f"{100 * summary['fraction_below_-900']:.1f}% below -900)"
    )


def _looks_like_ct(sample: np.ndarray, offset: float = 0.0) -> bool:
    """CT in HU (``offset`` 0), or unrescaled CT (``offset`` 1024): after subtracting ``offset`` it has air
    (below -500) and soft tissue (-150..250)."""
    air = np.mean(sample < offset + _AIR_PRESENT_HU)
    soft_tissue = np.mean((sample > offset - 150) & (sample < offset + 250))
    return air > 0.02 and soft_tissue > 0.02


def check_intensity(volume: Volume, allow_display: bool = True) -> str:
    """Decide how to read ``volume``'s values: ``"hu"`` (Hounsfield units) or ``"display"`` (0-255).

    HU CT contains air near -1000 (values below -500), possibly with -2048/-3024 padding outside the scan
    field of view. 0-255 data is the documented 8-bit path (lung-window PNG/JPG slices, the Radiopaedia
    cases of COVID-19-CT-Seg): accepted when the volume is already marked ``intensity == "display"`` or
    ``allow_display`` is set. Everything else raises :class:`InputError` saying what to do.
    """
    array = np.asarray(volume.array)
    if array.size == 0:
        raise InputError("The image has no voxels", "give a non-empty CT")
    summary = intensity_summary(array)
    low, high = summary["min"], summary["max"]
    if not np.isfinite(low) or not np.isfinite(high):
        raise InputError(f"The image contains NaN or infinite values ({_describe(summary)})",
                         "replace them (e.g. with -1024 HU) and run again")
    if high - low < 1e-6:
        raise InputError(
            f"The image is constant (every voxel is {low:g}): there is nothing to segment",
            "check that the right series/file was exported (not a blank or scout image)",
        )
    display_range = low >= 0 and high <= 255
    if volume.intensity == "display" and display_range:
        return "display"
    if low < _AIR_PRESENT_HU:
        return "hu"
    if display_range:
        if high <= 1.0:
            raise InputError(
                f"The image looks normalised to 0..1 ({_describe(summary)}), not a CT in HU or an 8-bit slice",
                "give the original CT in Hounsfield units (or the 0-255 exported slice)",
            )
        if allow_display:
            return "display"
        raise InputError(
            f"The image looks like an 8-bit display image ({_describe(summary)}), not Hounsfield units",
            "give the CT in HU, or allow 8-bit input with '--intensity display'",
        )
    if low >= 0 and high <= _RAW_CT_MAX and _looks_like_ct(_sample(array), offset=1024):
        raise InputError(
            f"The CT values look like raw scanner values without the DICOM rescale ({_describe(summary)}): "
            "air should be about -1000 HU",
            "apply the rescale (HU = value * RescaleSlope + RescaleIntercept, usually value - 1024) "
            "or run with '--intensity raw', which does exactly that",
        )
    if low >= 0:
        raise InputError(
            f"The image does not look like CT ({_describe(summary)}): no air below -500 HU; "
            "MR or another modality cannot be segmented by CT models",
            "give a chest CT in Hounsfield units",
        )
    raise InputError(
        f"The image has no air below -500 HU ({_describe(summary)}): not a chest CT in Hounsfield units "
        "(MR, normalised or z-scored data?)",
        "give the original chest CT in HU, including the lungs and the air around the body",
    )


def as_display(volume: Volume) -> Volume:
    """``--intensity display``: ``volume`` marked as 8-bit lung-window grey levels (0..255).

    Refuses other value ranges: marking a HU CT as display made the classical method and the numbers read
    -1000 HU as 8-bit grey levels (lungs of a few mL reported as a normal result). Values within
    ``DISPLAY_TOLERANCE`` of 0..255 are clipped into it.
    """
    array = np.asarray(volume.array)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    # empty, NaN and infinite images pass on to check_intensity, whose messages name those faults
    if np.isfinite([low, high]).all() and (low < -DISPLAY_TOLERANCE or high > 255 + DISPLAY_TOLERANCE):
        hu = ", which look like Hounsfield units (air below -500)" if low < _AIR_PRESENT_HU else ""
        raise InputError(
            f"'--intensity display' is for 8-bit lung-window images (values 0..255), but this image has "
            f"{_describe(intensity_summary(array))}{hu}",
            "drop '--intensity display' (or use '--intensity auto'): auto reads a CT in HU and explains "
            "any other value range",
        )
    return volume.with_array(array if low >= 0 and high <= 255 else np.clip(array, 0, 255), intensity="display")


def check_rescaled_raw(volume: Volume) -> None:
    """``--intensity raw`` subtracted 1024: the result must pass the test by which the auto path recognises
    unrescaled CT (air and soft tissue present); else the input was not raw scanner values, e.g. a CT
    already in HU, which the conversion turned into values no CT has (lungs of a few mL, reported as ok)."""
    if _looks_like_ct(_sample(volume.array)):
        return
    summary = intensity_summary(volume.array)
    already_hu = summary["min"] + 1024 < _AIR_PRESENT_HU  # air below -500 before the conversion
    hu = "; before it the image already had air below -500, as a CT in HU has" if already_hu else ""
    raise InputError(
        f"After '--intensity raw' subtracted 1024 the image does not look like CT in HU ({_describe(summary)}: "
        f"a CT has both air below -500 and soft tissue at -150..250 HU){hu}",
        "drop '--intensity raw' (or use '--intensity auto'): raw is only for scanner values without the "
        "DICOM rescale (air near 0, soft tissue near 1024)",
    )


def to_unit_range(array: np.ndarray, kind: str, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """Map HU through ``window`` (or display values /255) to float32 in [0, 1]; values outside are clipped."""
    array = np.asarray(array, dtype=np.float32)
    if kind == "hu":
        low, high = float(window[0]), float(window[1])
        if high <= low:
            raise ValueError(f"window must be (low, high) with high > low, got {window}")
        out = (array - np.float32(low)) * np.float32(1.0 / (high - low))
    elif kind == "display":
        out = array * np.float32(1.0 / 255.0)
    else:
        raise ValueError(f"intensity kind must be 'hu' or 'display', got {kind!r}")
    return np.clip(out, 0.0, 1.0, out=out)


def lung_window(array: np.ndarray, kind: str, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """Alias of :func:`to_unit_range` (the name used in docs/ARCHITECTURE.md)."""
    return to_unit_range(array, kind, window)


def hu_from_display(array: np.ndarray, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """Approximate HU of 0-255 display values, assuming they were exported in ``window``.

    Values at 0 or 255 were clipped by the export, so the true HU there is only bounded (<= low, >= high).
    """
    low, high = float(window[0]), float(window[1])
    return (low + np.asarray(array, dtype=np.float32) * np.float32((high - low) / 255.0)).astype(np.float32)
