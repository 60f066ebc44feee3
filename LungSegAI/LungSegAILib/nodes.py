"""The bridge between Slicer's MRML scene and lungseg_core.

Everything here uses only classes that exist both in the Slicer application and in the ``slicer-core``
wheel (MRML nodes, vtkSegmentationCore, plain VTK), never ``qt``, so it is tested for real without Slicer.

Coordinate systems: Slicer nodes store their geometry in RAS, lungseg_core's :class:`Volume` in LPS
(the ITK/DICOM convention). The two differ by a sign flip of the first two axes; every conversion goes
through :data:`LPS_TO_RAS` so that a voxel keeps its physical position in both directions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from lungseg_core.io.volume import Volume
from lungseg_core.labels import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG, SegmentSpec, segments_for

# diag(-1, -1, 1): maps LPS to RAS and back (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Attribute that ties a result node to the volume it was computed from, so a re-run replaces it.
SOURCE_ATTRIBUTE = "LungSegAI.SourceVolumeID"
ROLE_ATTRIBUTE = "LungSegAI.Role"

BINARY_LABELMAP = "Binary labelmap"
CLOSED_SURFACE = "Closed surface"


# ----------------------------------------------------------------------------------------------------------
# matrices
# ----------------------------------------------------------------------------------------------------------
def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for col in range(4):
            matrix.SetElement(row, col, float(array[row, col]))
    return matrix


def numpy_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(volume: Volume) -> np.ndarray:
    """4x4 IJK -> RAS matrix of a lungseg Volume (its geometry is LPS)."""
    return LPS_TO_RAS @ volume.ijk_to_lps()


# ----------------------------------------------------------------------------------------------------------
# volumes
# ----------------------------------------------------------------------------------------------------------
def _image_data(array: np.ndarray) -> vtk.vtkImageData:
    """vtkImageData holding a copy of a (z, y, x) array; VTK's x-fastest order is numpy's C order here."""
    array = np.ascontiguousarray(array)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    return image


def volume_to_node(
    volume: Volume,
    scene: slicer.vtkMRMLScene,
    name: str | None = None,
    node: slicer.vtkMRMLScalarVolumeNode | None = None,
    labelmap: bool = False,
) -> slicer.vtkMRMLScalarVolumeNode:
    """Put a lungseg Volume into the scene as a scalar (or labelmap) volume node with RAS geometry."""
    if node is None:
        class_name = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(class_name, name or volume.name)
    elif name:
        node.SetName(name)
    node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras(volume)))
    node.SetAndObserveImageData(_image_data(volume.array))
    return node


def node_to_volume(node: slicer.vtkMRMLScalarVolumeNode, intensity: str = "hu") -> Volume:
    """A lungseg Volume (LPS geometry, (z, y, x) array copy) from a scalar volume node.

    A parent transform is hardened into the geometry (only linear transforms are supported), because the
    model must see the image where the user sees it.
    """
    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise ValueError(f"Volume '{node.GetName()}' has no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"Volume '{node.GetName()}' has {image.GetNumberOfScalarComponents()} components; "
                         "a single-channel CT is needed")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras_array = numpy_matrix(matrix)
    transform_node = node.GetParentTransformNode()
    if transform_node is not None:
        if not transform_node.IsTransformToWorldLinear():
            raise ValueError(f"Volume '{node.GetName()}' is under a non-linear transform; harden it first")
        to_world = vtk.vtkMatrix4x4()
        transform_node.GetMatrixTransformToWorld(to_world)
        ijk_to_ras_array = numpy_matrix(to_world) @ ijk_to_ras_array
    ijk_to_lps = LPS_TO_RAS @ ijk_to_ras_array
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    direction = ijk_to_lps[:3, :3] / spacing
    nx, ny, nz = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(nz, ny, nx).copy()
    return Volume(
        array, tuple(spacing), tuple(ijk_to_lps[:3, 3]), direction,
        intensity=intensity, is_2d=nz == 1, name=node.GetName(),
    )


# ----------------------------------------------------------------------------------------------------------
# segmentations
# ----------------------------------------------------------------------------------------------------------
def ensure_conversion_rules() -> None:
    """Register the labelmap <-> surface converters if nobody has (the Slicer app does it at startup)."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for rule_class in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                       slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        if rule_class.__name__ not in registered:
            factory.RegisterConverterRule(rule_class())


def terminology_string(spec: SegmentSpec) -> str:
    """Slicer's ``TerminologyEntry`` tag: context~category~type~modifier~anatomicContext~region~regionModifier."""
    t = spec.terminology
    codes = lambda key: "^".join(t.get(key, ["", "", ""]))  # noqa: E731 - tiny local formatter
    return "~".join([
        t.get("contextName", ""), codes("category"), codes("type"), codes("typeModifier"),
        t.get("anatomicContextName", ""), codes("anatomicRegion"), codes("anatomicRegionModifier"),
    ])


def _oriented_labelmap(labels: np.ndarray, ijk_to_ras_array: np.ndarray) -> "slicer.vtkOrientedImageData":
    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(_image_data(np.asarray(labels, dtype=np.uint8)))
    image.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras_array))
    return image


def _reference_ijk_to_ras(reference_node: slicer.vtkMRMLScalarVolumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(matrix)
    return numpy_matrix(matrix)


def labelmaps_to_segmentation(
    scene: slicer.vtkMRMLScene,
    reference_node: slicer.vtkMRMLScalarVolumeNode,
    labelmaps: Mapping[str, np.ndarray | None],
    name: str | None = None,
    node: slicer.vtkMRMLSegmentationNode | None = None,
    closed_surface: bool = True,
) -> slicer.vtkMRMLSegmentationNode:
    """Fill a segmentation node from lungseg labelmaps ({"lungs": a, "infection": b}, (z, y, x) uint8).

    Each task becomes one shared labelmap layer (infection overlaps the lungs, so they cannot share one),
    with the segment names, colours and terminology of :mod:`lungseg_core.labels`. The reference geometry
    is the input volume's, so the result lines up voxel for voxel with it. An existing ``node`` is emptied
    and reused: re-running replaces the result instead of piling up nodes.
    """
    expected = tuple(reversed(reference_node.GetImageData().GetDimensions()))
    ensure_conversion_rules()  # a segmentation copies the factory's rules when it is created
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{reference_node.GetName()} segmentation")
    elif name:
        node.SetName(name)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    segmentation = node.GetSegmentation()
    was_modifying = node.StartModify()
    try:
        segmentation.RemoveAllSegments()
        segmentation.SetSourceRepresentationName(BINARY_LABELMAP)
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        ijk_to_ras_array = _reference_ijk_to_ras(reference_node)
        for task, labels in labelmaps.items():
            if labels is None:
                continue
            if tuple(labels.shape) != expected:
                raise ValueError(f"{task} labelmap shape {labels.shape} differs from the volume's {expected}")
            layer = _oriented_labelmap(labels, ijk_to_ras_array)  # one object = one shared layer
            for spec in segments_for(task):
                segment = slicer.vtkSegment()
                segment.SetName(spec.name)
                segment.SetColor(*spec.color)
                segment.SetNameAutoGenerated(False)
                segment.SetColorAutoGenerated(False)
                segment.SetLabelValue(spec.label)
                segment.SetTerminology(terminology_string(spec))
                segment.AddRepresentation(BINARY_LABELMAP, layer)
                segmentation.AddSegment(segment, spec.segment_id)
        node.SetAttribute(SOURCE_ATTRIBUTE, reference_node.GetID() or "")
        node.SetAttribute(ROLE_ATTRIBUTE, "segmentation")
    finally:
        node.EndModify(was_modifying)
    if closed_surface:
        show_closed_surfaces(node)
    return node


def show_closed_surfaces(node: slicer.vtkMRMLSegmentationNode, visible: bool = True) -> None:
    """Build the closed-surface representation (smoothed by Slicer's default factor) and show it in 3D."""
    ensure_conversion_rules()
    if visible:
        node.CreateClosedSurfaceRepresentation()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetVisibility3D(visible)
        if visible:
            display.SetPreferredDisplayRepresentationName3D(CLOSED_SURFACE)


def segment_ids(node: slicer.vtkMRMLSegmentationNode) -> list[str]:
    ids = vtk.vtkStringArray()
    node.GetSegmentation().GetSegmentIDs(ids)
    return [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]


def reference_geometry_image(reference_node: slicer.vtkMRMLScalarVolumeNode) -> "slicer.vtkOrientedImageData":
    """An empty oriented image with the reference volume's grid (extent, spacing, origin, directions)."""
    image = slicer.vtkOrientedImageData()
    image.SetExtent(reference_node.GetImageData().GetExtent())
    image.SetImageToWorldMatrix(vtk_matrix(_reference_ijk_to_ras(reference_node)))
    return image


def segment_array(
    node: slicer.vtkMRMLSegmentationNode, segment_id: str, reference_node: slicer.vtkMRMLScalarVolumeNode
) -> np.ndarray:
    """Boolean (z, y, x) mask of one segment in the reference volume's voxel grid.

    Slicer may crop or share a segment's labelmap, so it is resampled onto the reference grid (nearest
    neighbour; identity when the grids already agree) and compared with the segment's label value.
    """
    segment = node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise KeyError(segment_id)
    labelmap = segment.GetRepresentation(BINARY_LABELMAP)
    reference = reference_geometry_image(reference_node)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, reference, resampled)
    nx, ny, nz = resampled.GetDimensions()
    values = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(nz, ny, nx)
    return values == segment.GetLabelValue()


def segment_volumes_ml(
    node: slicer.vtkMRMLSegmentationNode, reference_node: slicer.vtkMRMLScalarVolumeNode
) -> dict[str, float]:
    """Volume (mL) of each segment from its voxels: what Segment Statistics' labelmap plugin reports."""
    matrix = _reference_ijk_to_ras(reference_node)
    voxel_ml = abs(np.linalg.det(matrix[:3, :3])) / 1000.0
    segmentation = node.GetSegmentation()
    return {
        segmentation.GetSegment(sid).GetName(): float(segment_array(node, sid, reference_node).sum() * voxel_ml)
        for sid in segment_ids(node)
    }


def closed_surface_volume_ml(node: slicer.vtkMRMLSegmentationNode, segment_id: str) -> float:
    """Volume (mL) enclosed by a segment's closed surface (vtkMassProperties)."""
    ensure_conversion_rules()
    node.CreateClosedSurfaceRepresentation()
    surface = vtk.vtkPolyData()
    node.GetClosedSurfaceRepresentation(segment_id, surface)
    if surface.GetNumberOfPoints() == 0:
        return 0.0
    triangles = vtk.vtkTriangleFilter()
    triangles.SetInputData(surface)
    mass = vtk.vtkMassProperties()
    mass.SetInputConnection(triangles.GetOutputPort())
    mass.Update()
    return mass.GetVolume() / 1000.0


def save_segmentation(node: slicer.vtkMRMLSegmentationNode, path: str | os.PathLike) -> Path:
    """Write ``.seg.nrrd`` with Slicer's own storage node, atomically (no partial file on failure)."""
    from lungseg_core.io.atomic import atomic_path

    path = Path(path)
    if not path.name.lower().endswith(".seg.nrrd"):
        raise ValueError(f"'{path.name}' must end with .seg.nrrd")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetUseCompression(True)
    with atomic_path(path) as tmp:
        storage.SetFileName(str(tmp))
        if not storage.WriteData(node):
            raise OSError(f"Slicer could not write '{path}'")
    return path


# ----------------------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------------------
def measurement_rows(
    volumes_ml: Mapping[str, float], lungs: np.ndarray | None, infection: np.ndarray | None
) -> list[dict[str, object]]:
    """Rows of the results table: each segment's volume and the infected percentage of each lung.

    The percentage of a lung is (infection voxels inside that lung) / (that lung's voxels); both come from
    the same grid, so voxel counts give it exactly.
    """
    rows: list[dict[str, object]] = [
        {"Measurement": f"{name} volume", "Value": round(value, 2), "Unit": "mL"}
        for name, value in volumes_ml.items()
    ]
    if lungs is not None and infection is not None:
        infected = infection > 0
        for label, side in ((RIGHT_LUNG, "Right lung"), (LEFT_LUNG, "Left lung")):
            lung = lungs == label
            total = int(lung.sum())
            percent = 100.0 * np.logical_and(lung, infected).sum() / total if total else 0.0
            rows.append({"Measurement": f"{side} infection", "Value": round(float(percent), 2), "Unit": "%"})
        for label, kind in ((GGO, "Ground-glass opacity"), (CONSOLIDATION, "Consolidation")):
            lung_total = int((lungs > 0).sum())
            part = np.logical_and(infection == label, lungs > 0).sum()
            percent = 100.0 * part / lung_total if lung_total else 0.0
            rows.append({"Measurement": f"{kind} of both lungs", "Value": round(float(percent), 2), "Unit": "%"})
    return rows


def rows_to_table(
    scene: slicer.vtkMRMLScene,
    rows: Iterable[Mapping[str, object]],
    name: str,
    node: slicer.vtkMRMLTableNode | None = None,
) -> slicer.vtkMRMLTableNode:
    """A table node with one column per key (numbers as doubles, anything else as strings)."""
    rows = list(rows)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    else:
        node.SetName(name)
    table = node.GetTable()
    was_modifying = node.StartModify()
    try:
        table.Initialize()
        columns = list(dict.fromkeys(key for row in rows for key in row))
        for column in columns:
            numeric = all(isinstance(row.get(column), (int, float)) for row in rows if column in row)
            array = vtk.vtkDoubleArray() if numeric and rows else vtk.vtkStringArray()
            array.SetName(column)
            array.SetNumberOfValues(len(rows))
            for i, row in enumerate(rows):
                value = row.get(column, "")
                array.SetValue(i, float(value) if numeric else str(value))
            table.AddColumn(array)
        table.Modified()
    finally:
        node.EndModify(was_modifying)
    return node


def table_to_rows(node: slicer.vtkMRMLTableNode) -> list[dict[str, object]]:
    table = node.GetTable()
    columns = [table.GetColumn(c) for c in range(table.GetNumberOfColumns())]
    rows = []
    for r in range(table.GetNumberOfRows()):
        rows.append({col.GetName(): col.GetValue(r) for col in columns})
    return rows


# ----------------------------------------------------------------------------------------------------------
# scene organisation
# ----------------------------------------------------------------------------------------------------------
def find_result_node(scene: slicer.vtkMRMLScene, class_name: str, source_node, role: str):
    """The result node of ``role`` made earlier from ``source_node``, or None."""
    for i in range(scene.GetNumberOfNodesByClass(class_name)):
        candidate = scene.GetNthNodeByClass(i, class_name)
        if (candidate.GetAttribute(SOURCE_ATTRIBUTE) == source_node.GetID()
                and candidate.GetAttribute(ROLE_ATTRIBUTE) == role):
            return candidate
    return None


def tag_result(node, source_node, role: str) -> None:
    node.SetAttribute(SOURCE_ATTRIBUTE, source_node.GetID() or "")
    node.SetAttribute(ROLE_ATTRIBUTE, role)


def place_beside(scene: slicer.vtkMRMLScene, node, source_node) -> int:
    """Put ``node`` under the same subject-hierarchy parent (the study) as ``source_node``; returns the parent item."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    source_item = sh.GetItemByDataNode(source_node)
    parent = sh.GetItemParent(source_item) if source_item else sh.GetSceneItemID()
    item = sh.GetItemByDataNode(node)
    if not item:
        item = sh.CreateItem(parent, node)
    else:
        sh.SetItemParent(item, parent)
    return parent
