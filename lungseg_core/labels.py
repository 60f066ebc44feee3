"""Label conventions shared by every output: labelmaps, Slicer segmentations, reports.

Lung labelmap:      0 background, 1 right lung, 2 left lung (patient right/left, whatever the storage order).
Infection labelmap: 0 none, 1 ground-glass opacity, 2 consolidation (only inside the lungs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TASKS = ("lungs", "infection")

# Typical densities of the two infection patterns (HU), used by the classical baseline and lesion synthesis
GGO_HU = (-750.0, -300.0)
CONSOLIDATION_HU = (-100.0, 60.0)

RIGHT_LUNG = 1
LEFT_LUNG = 2
GGO = 1
CONSOLIDATION = 2

LUNG_LABELS: dict[int, str] = {RIGHT_LUNG: "Right lung", LEFT_LUNG: "Left lung"}
INFECTION_LABELS: dict[int, str] = {GGO: "Ground-glass opacity", CONSOLIDATION: "Consolidation"}

_ANATOMY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_ANATOMIC_CODES = "Anatomic codes - DICOM master list"
_STRUCTURE = ["SCT", "123037004", "Anatomical Structure"]
_ALTERED = ["SCT", "49755003", "Morphologically Altered Structure"]


@dataclass(frozen=True)
class SegmentSpec:
    """Name, colour and standard terminology of one output segment."""

    name: str
    task: str  # "lungs" or "infection"
    label: int  # value in that task's labelmap
    color: tuple[float, float, float]
    terminology: dict = field(default_factory=dict)

    @property
    def segment_id(self) -> str:
        return self.name.replace(" ", "_").replace("-", "_").lower()


SEGMENTS: tuple[SegmentSpec, ...] = (
    SegmentSpec(
        "Right lung", "lungs", RIGHT_LUNG, (0.502, 0.682, 0.502),
        {"contextName": _ANATOMY_CONTEXT, "category": _STRUCTURE, "type": ["SCT", "39607008", "Lung"],
         "typeModifier": ["SCT", "24028007", "Right"], "anatomicContextName": _ANATOMIC_CODES},
    ),
    SegmentSpec(
        "Left lung", "lungs", LEFT_LUNG, (0.369, 0.584, 0.812),
        {"contextName": _ANATOMY_CONTEXT, "category": _STRUCTURE, "type": ["SCT", "39607008", "Lung"],
         "typeModifier": ["SCT", "7771000", "Left"], "anatomicContextName": _ANATOMIC_CODES},
    ),
    SegmentSpec(
        "Ground-glass opacity", "infection", GGO, (1.0, 0.843, 0.0),
        {"contextName": _ANATOMY_CONTEXT, "category": _ALTERED,
         "type": ["DCM", "112120", "Ground glass opacity"],
         "anatomicContextName": _ANATOMIC_CODES, "anatomicRegion": ["SCT", "39607008", "Lung"]},
    ),
    SegmentSpec(
        "Consolidation", "infection", CONSOLIDATION, (0.863, 0.078, 0.235),
        {"contextName": _ANATOMY_CONTEXT, "category": _ALTERED,
         "type": ["SCT", "95436008", "Lung consolidation"],
         "anatomicContextName": _ANATOMIC_CODES, "anatomicRegion": ["SCT", "39607008", "Lung"]},
    ),
)


def segments_for(task: str) -> tuple[SegmentSpec, ...]:
    """The segments a task produces (``lungs``, ``infection`` or ``all``)."""
    if task == "all":
        return SEGMENTS
    return tuple(s for s in SEGMENTS if s.task == task)


def segment_by_name(name: str) -> SegmentSpec:
    for spec in SEGMENTS:
        if spec.name.lower() == name.lower():
            return spec
    raise KeyError(name)


def label_column(name: str) -> str:
    """A label's name as a column suffix: "Ground-glass opacity" -> "ground_glass_opacity"."""
    return name.lower().replace(" ", "_").replace("-", "_")
