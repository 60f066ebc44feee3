"""Inference: devices, whole-volume prediction, the Segmenter class and the end-to-end case pipeline."""

from lungseg_core.inference.network import Cancelled
from lungseg_core.inference.segmenter import Segmenter

__all__ = ["Cancelled", "Segmenter", "segment_volume", "segment_case", "segment_many", "SegmentationResult", "CaseOutcome"]


def __getattr__(name: str):
    # The pipeline pulls in reports and post-processing; import it only when asked for.
    if name in ("segment_volume", "segment_case", "segment_many", "SegmentationResult", "CaseOutcome"):
        from lungseg_core.inference import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
