"""From a lungseg_core SegmentationResult to Slicer nodes and files; the synchronous core of the Logic.

``segment_node`` is what the module's Logic, the batch script and the in-Slicer self-test all call, so the
GUI path and the headless path cannot drift apart. lungseg_core.inference is imported lazily so the module
still loads (and can explain what is missing) before lungseg_core or torch is importable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


from LungSegAILib import nodes

ProgressFn = Callable[[float, str], None]


@dataclass
class ImportedResult:
    segmentation: Any  # vtkMRMLSegmentationNode
    table: Any  # vtkMRMLTableNode
    volumes_ml: dict[str, float]


def _task_labelmaps(result, task: str):
    from lungseg_core.inference.pipeline import task_labelmaps  # lazy: see the module docstring

    return task_labelmaps(result, task)


def import_result(
    scene,
    volume_node,
    result,
    task: str = "all",
    show_3d: bool = True,
    volumes_ml: Callable[[Any, Any], dict[str, float]] | None = None,
) -> ImportedResult:
    """Create or replace the input's segmentation and measurement table, placed beside it in the study.

    ``volumes_ml(segmentation_node, volume_node)`` computes segment volumes; inside Slicer the module
    passes Segment Statistics, here the default counts voxels (the same number, see tests).
    """
    base = volume_node.GetName()
    segmentation = nodes.find_result_node(scene, "vtkMRMLSegmentationNode", volume_node, "segmentation")
    segmentation = nodes.labelmaps_to_segmentation(
        scene, volume_node, _task_labelmaps(result, task), name=f"{base} lungs", node=segmentation,
        closed_surface=show_3d,
    )
    nodes.tag_result(segmentation, volume_node, "segmentation")
    nodes.place_beside(scene, segmentation, volume_node)

    measured = (volumes_ml or nodes.segment_volumes_ml)(segmentation, volume_node)
    rows = nodes.measurement_rows(measured, result.lungs, result.infection if task != "lungs" else None)
    table = nodes.find_result_node(scene, "vtkMRMLTableNode", volume_node, "measurements")
    table = nodes.rows_to_table(scene, rows, f"{base} lung measurements", node=table)
    nodes.tag_result(table, volume_node, "measurements")
    nodes.place_beside(scene, table, volume_node)
    return ImportedResult(segmentation, table, measured)


def run_segmentation(volume, task: str, lung_model: str, infection_model: str, device: str,
                     progress: ProgressFn | None = None, cancel: threading.Event | None = None):
    """lungseg_core's segment_volume, imported only when needed."""
    from lungseg_core.inference import segment_volume

    return segment_volume(volume, task=task, lung_model=lung_model, infection_model=infection_model,
                          device=device, progress=progress, cancel=cancel)


def segment_node(scene, volume_node, task: str = "all", lung_model: str = "default",
                 infection_model: str = "default", device: str = "auto", progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None, show_3d: bool = True, volumes_ml=None):
    """Segment a volume node synchronously; returns (SegmentationResult, ImportedResult, lungseg Volume)."""
    volume = nodes.node_to_volume(volume_node)
    source = volume_node.GetStorageNode().GetFileName() if volume_node.GetStorageNode() else None
    if source:
        volume.metadata["source"] = source
    result = run_segmentation(volume, task, lung_model, infection_model, device, progress, cancel)
    imported = import_result(scene, volume_node, result, task, show_3d=show_3d, volumes_ml=volumes_ml)
    return result, imported, volume


def write_case_outputs(segmentation_node, volume, result, task: str, out_dir: str | Path, case: str,
                       overwrite: bool = False, read_seconds: float = 0.0) -> dict[str, Path]:
    """The files ``lungseg segment`` writes (labelmaps, CASE.json), but CASE.seg.nrrd saved by Slicer itself.

    All files appear together or not at all (lungseg_core's AtomicGroup).
    """
    from lungseg_core.inference.pipeline import check_outputs_free, output_paths, write_case_outputs as write_all

    paths = output_paths(Path(out_dir), case, task)
    check_outputs_free(paths, overwrite)
    volume.name = case
    write_all(volume, result, task, paths, read_seconds,
              write_segmentation_file=lambda path: nodes.save_segmentation(segmentation_node, path),
              extra={"segmentation_written_by": "3D Slicer vtkMRMLSegmentationStorageNode"})
    return paths
