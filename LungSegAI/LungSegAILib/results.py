"""From a lungseg_core SegmentationResult to Slicer nodes and files; the synchronous core of the Logic.

``segment_node`` is what the module's Logic, the batch script and the in-Slicer self-test all call, so the
GUI path and the headless path cannot drift apart. lungseg_core.inference is imported lazily so the module
still loads (and can explain what is missing) before lungseg_core or torch is importable.
"""

from __future__ import annotations

import re
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
    output_node=None,
    log: Callable[[str], None] = print,
    reported: set | None = None,
) -> ImportedResult:
    """Write the input's segmentation and measurement table, placed beside it in the study.

    The segmentation goes into ``output_node`` (the user's pick) or the volume's earlier result when that
    holds only LungSegAI's unedited work (see :func:`_target_segmentation`); otherwise into a new node.
    ``volumes_ml(segmentation_node, volume_node)`` computes segment volumes; inside Slicer the module
    passes Segment Statistics, here the default counts voxels (the same number, see tests). ``reported`` (the
    module's Logic keeps one per scene) holds the "left as it is" notices already logged: each is logged once,
    not on every Apply while the kept node exists.
    """
    base = volume_node.GetName()
    target, left_alone = _target_segmentation(scene, volume_node, output_node)
    # new nodes get names no other node has, numbered alike ("CT lungs (2)", "CT lung measurements (2)");
    # existing nodes keep theirs (the user may have chosen it)
    new_names = nodes.unique_names(scene, f"{base} lungs", f"{base} lung measurements")
    segmentation = nodes.labelmaps_to_segmentation(
        scene, volume_node, _task_labelmaps(result, task), name=None if target else new_names[0], node=target,
        closed_surface=show_3d)
    nodes.tag_result(segmentation, volume_node, "segmentation")
    nodes.mark_written(segmentation, volume_node)
    nodes.place_beside(scene, segmentation, volume_node)
    _log_left_alone(left_alone, segmentation, log, reported)

    measured = (volumes_ml or nodes.segment_volumes_ml)(segmentation, volume_node)
    rows = nodes.measurement_rows(measured, result.lungs, result.infection if task != "lungs" else None)
    # one table per segmentation: a kept (edited) result keeps the table that describes it
    table = next(iter(nodes.find_result_nodes(scene, "vtkMRMLTableNode", segmentation, "measurements",
                                              nodes.SEGMENTATION_ROLE)), None)
    table = nodes.rows_to_table(scene, rows, table.GetName() if table else new_names[1], node=table)
    nodes.tag_result(table, volume_node, "measurements", segmentation)
    nodes.place_beside(scene, table, volume_node)
    _log_lung_coverage(result.lungs, volume_node, log)
    for note in result.lung_notes:  # e.g. consolidation against the mediastinum left out of the lungs
        log(f"Warning: {note}")
    return ImportedResult(segmentation, table, measured)


def _log_lung_coverage(lungs, volume_node, log: Callable[[str], None]) -> None:
    """Warn, as CASE.json's notes do, when a CT shows too little lung for its numbers to describe the chest
    (only the lung bases, or stomach gas taken for lung in a scan without lungs)."""
    if lungs is None or sum(n > 1 for n in lungs.shape) < 3:  # a single slice: no lung volume to judge
        return
    import numpy as np
    from lungseg_core.reports.quantify import lung_coverage_notes

    voxel_ml = float(np.prod(volume_node.GetSpacing())) / 1000.0
    for note in lung_coverage_notes(np.count_nonzero(lungs) * voxel_ml):
        log(f"Warning: {note}")


def _log_left_alone(left_alone, segmentation, log, reported: set | None) -> None:
    """Say which nodes were left alone; with ``reported``, each (node, reason) only once: a kept edited result
    stays in the scene, and naming it again on every Apply buries the log."""
    for node, reason in left_alone:
        key = (node.GetID(), reason)
        if reported is not None and key in reported:
            continue
        log(f"{reason}: left as it is; the result is in '{segmentation.GetName()}'")
        if reported is not None:
            reported.add(key)


def _target_segmentation(scene, volume_node, chosen) -> tuple[Any, list[tuple[Any, str]]]:
    """(node to write into, or None for a new one; (node, why) for each node that could have been used but was
    left alone).

    Never overwrites anyone's work. ``chosen`` (the output selector) is used when it is this volume's result as
    LungSegAI wrote it, or someone's own segmentation of this CT that can take LungSegAI's segments beside its
    own. Else the volume's earlier result is reused if unchanged since LungSegAI wrote it; an edited one is kept.
    Each node's fingerprint is computed once here (it reads every segment's voxels).
    """
    checked: dict[str, str] = {}

    def why_not_reused(node) -> str:
        if node.GetID() not in checked:
            checked[node.GetID()] = nodes.why_not_reused(node, volume_node)
        return checked[node.GetID()]

    left_alone = []
    if chosen is not None:
        reason = _why_not_write_into(chosen, volume_node, why_not_reused)
        if not reason:
            return chosen, []
        left_alone.append((chosen, f"Output '{chosen.GetName()}' {reason}"))
    for node in nodes.find_result_nodes(scene, "vtkMRMLSegmentationNode", volume_node, "segmentation"):
        reason = why_not_reused(node)
        if not reason:
            return node, left_alone
        if chosen is None or node.GetID() != chosen.GetID():
            left_alone.append((node, f"'{node.GetName()}' {reason}"))
    return None, left_alone


def _why_not_write_into(node, volume_node, why_not_reused) -> str:
    """Why writing the result into the segmentation ``node`` would harm someone's work ("" if it would not)."""
    owner = nodes.source_of(node)
    if owner is None:
        return nodes.why_segments_cannot_be_added(node, volume_node)
    if owner.GetID() != volume_node.GetID():  # e.g. the selector still shows the previous input's result
        return f"is the result of '{owner.GetName()}'"
    return why_not_reused(node)


def run_segmentation(volume, task: str, lung_model: str, infection_model: str, device: str,
                     progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                     intensity: str = "auto"):
    """lungseg_core's segment_volume (imported only when needed), with Slicer's wording for its advice, and
    refusing a 3D CT in which no lung was found."""
    from lungseg_core.errors import LungSegError
    from lungseg_core.inference import segment_volume

    try:
        result = segment_volume(volume, task=task, lung_model=lung_model, infection_model=infection_model,
                                device=device, progress=progress, cancel=cancel, intensity=intensity)
    except LungSegError as exc:
        if _slicer_advice(exc.fix) == exc.fix:
            raise
        raise type(exc)(exc.problem, _slicer_advice(exc.fix)) from None
    check_lungs_found(volume, result)
    return result


# lungseg_core's advice names the CLI's --intensity option; in Slicer the same choice is the Logic's argument.
_CLI_INTENSITY = re.compile(r"'--intensity (\w+)'")


def _slicer_advice(fix: str) -> str:
    return _CLI_INTENSITY.sub(
        lambda match: f"intensity='{match.group(1)}' (Python console: slicer.util.getModuleLogic('LungSegAI')"
                      f".segmentNode(volumeNode, intensity='{match.group(1)}'))", fix)


def check_lungs_found(volume, result) -> None:
    """A chest CT always shows lungs. None in a 3D image means the image is not what it should be, typically a
    truncated file that Slicer's reader zero-filled without an error: fail instead of reporting 0 mL as ok.
    (A single slice may lie below or above the lungs.)"""
    if volume.is_2d or result.lungs is None or result.lungs.any():
        return
    from lungseg_core.errors import InputError
    from lungseg_core.preprocessing.intensity import intensity_summary

    air = 100 * intensity_summary(volume.array)["fraction_below_-900"]
    raise InputError(
        f"No lung was found in '{volume.name}' ({volume.shape[0]} slices; {air:.1f}% of its voxels below -900 HU, "
        "where a chest CT has lungs and air around the body): the image is probably truncated or corrupt, "
        "not in Hounsfield units, or not a chest CT",
        "look at it in the slice views, and load the original file again (re-copy or re-export it if it is "
        "damaged)",
    )


def segment_node(scene, volume_node, task: str = "all", lung_model: str = "default",
                 infection_model: str = "default", device: str = "auto", progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None, show_3d: bool = True, volumes_ml=None,
                 intensity: str = "auto", output_node=None, log: Callable[[str], None] = print,
                 reported: set | None = None):
    """Segment a volume node synchronously; returns (SegmentationResult, ImportedResult, lungseg Volume)."""
    volume = nodes.node_to_volume(volume_node)
    source = volume_node.GetStorageNode().GetFileName() if volume_node.GetStorageNode() else None
    if source:
        volume.metadata["source"] = source
    result = run_segmentation(volume, task, lung_model, infection_model, device, progress, cancel, intensity)
    imported = import_result(scene, volume_node, result, task, show_3d=show_3d, volumes_ml=volumes_ml,
                             output_node=output_node, log=log, reported=reported)
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
