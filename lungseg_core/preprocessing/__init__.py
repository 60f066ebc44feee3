"""Preprocessing shared by training and inference: intensity kind, lung window, enhancement, cropping,
resampling, and the 2.5D slice contract (``SliceSpec``, ``prepare_slices``, ``restore_probabilities``)."""

from lungseg_core.preprocessing.cropping import (
    body_component,
    body_mask,
    bounding_box,
    crop_to_body,
    crop_volume,
    informative_slices,
    lung_bounding_box,
)
from lungseg_core.preprocessing.enhance import ENHANCE_METHODS, clahe, enhance_slices, equalize_histogram
from lungseg_core.preprocessing.intensity import (
    LUNG_WINDOW,
    check_intensity,
    hu_from_display,
    intensity_summary,
    lung_window,
    to_unit_range,
)
from lungseg_core.preprocessing.resample import resample_like, resample_volume
from lungseg_core.preprocessing.slices import (
    SliceLayout,
    SliceSpec,
    prepare_labels,
    prepare_slices,
    restore_labels,
    restore_probabilities,
    stack_context,
)

__all__ = [
    "ENHANCE_METHODS",
    "LUNG_WINDOW",
    "SliceLayout",
    "SliceSpec",
    "body_component",
    "body_mask",
    "bounding_box",
    "check_intensity",
    "clahe",
    "crop_to_body",
    "crop_volume",
    "enhance_slices",
    "equalize_histogram",
    "hu_from_display",
    "informative_slices",
    "intensity_summary",
    "lung_bounding_box",
    "lung_window",
    "prepare_labels",
    "prepare_slices",
    "resample_like",
    "resample_volume",
    "restore_labels",
    "restore_probabilities",
    "stack_context",
    "to_unit_range",
]
