"""Volume input/output: NIfTI, NRRD, MHA, DICOM series, 2D PNG/JPG slices, Slicer .seg.nrrd."""

from lungseg_core.io.atomic import AtomicGroup, atomic_path, write_atomic, write_text_atomic
from lungseg_core.io.readers import case_name, read_labelmap, read_volume
from lungseg_core.io.volume import Volume, patient_left_score
from lungseg_core.io.writers import write_labelmap, write_segmentation

__all__ = [
    "AtomicGroup",
    "Volume",
    "atomic_path",
    "case_name",
    "patient_left_score",
    "read_labelmap",
    "read_volume",
    "write_atomic",
    "write_labelmap",
    "write_segmentation",
    "write_text_atomic",
]
