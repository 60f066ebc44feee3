"""Write labelmaps and Slicer segmentations with exactly the input's geometry, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungseg_core.io.atomic import atomic_path
from lungseg_core.io.segmentation_files import write_seg_nrrd
from lungseg_core.io.volume import Volume


def write_labelmap(path: str | Path, reference: Volume, labels: np.ndarray) -> Path:
    """Save ``labels`` (z, y, x) as uint8 with ``reference``'s spacing, origin and direction."""
    import SimpleITK as sitk

    image = reference.with_array(np.asarray(labels, dtype=np.uint8)).to_sitk()
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return Path(path)


def write_segmentation(path: str | Path, reference: Volume, labelmaps: dict[str, np.ndarray]) -> Path:
    """Save a Slicer ``.seg.nrrd`` with one layer per task (see :func:`write_seg_nrrd`)."""
    return write_seg_nrrd(path, reference, labelmaps)
