"""The bridge between Slicer's MRML scene and lungseg_core.

Everything here uses only classes that exist both in the Slicer application and in the ``slicer-core``
wheel (MRML nodes, vtkSegmentationCore, plain VTK), never ``qt``, so it is tested for real without Slicer.

Coordinate systems: Slicer nodes store their geometry in RAS, lungseg_core's :class:`Volume` in LPS
(the ITK/DICOM convention). The two differ by a sign flip of the first two axes; every conversion goes
through :data:`LPS_TO_RAS` so that a voxel keeps its physical position in both directions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from lungseg_core.errors import InputError
from lungseg_core.io.readers import is_image_file
from lungseg_core.io.volume import Volume
from lungseg_core.labels import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG, SEGMENTS, SegmentSpec, segments_for

# diag(-1, -1, 1): maps LPS to RAS and back (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Node reference from a result to the volume it was computed from, and from a table to its segmentation.
# References, not attributes holding node IDs: Slicer remaps references when a scene is imported and IDs change.
SOURCE_ROLE = "LungSegAISource"
SEGMENTATION_ROLE = "LungSegAISegmentation"
ROLE_ATTRIBUTE = "LungSegAI.Role"
# Digest of a segmentation as LungSegAI wrote it; a re-run only replaces a node whose content still matches.
FINGERPRINT_ATTRIBUTE = "LungSegAI.Fingerprint"
# Before node references, results named their volume's ID in this attribute. It is neither written nor trusted
# any more: after a scene import it can name another patient's CT, and such results carry no fingerprint, so
# whether they were edited is unknown. A re-run therefore leaves them as they are and writes a new node.
SOURCE_ATTRIBUTE = "LungSegAI.SourceVolumeID"

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


def node_to_volume(node: slicer.vtkMRMLScalarVolumeNode) -> Volume:
    """A lungseg Volume (LPS geometry, (z, y, x) array copy) of a scalar volume node, in the node's own frame.

    A parent transform is left out on purpose, as Slicer's segmentation modules do: the result is written on
    this voxel grid and placed under the same transform, so it moves with the image wherever a registration or
    a display fix puts it. Right and left are decided by the image's own geometry, the patient's right as the
    scanner recorded it; a transform (even a rotation or a mirroring) moves the image and its labels together.

    Spacing, origin and directions are the node's stored values, not ones derived from its IJK-to-RAS matrix,
    and :class:`Volume` rounds away float noise in the spacing, so Slicer and ``lungseg segment`` see the same
    numbers for the same file; the values are marked as lungseg's reader marks them
    (:func:`_reads_as_display_slice`), so the pipeline's ``intensity="auto"`` treats both alike.
    """
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"'{node.GetName()}' is a label map (segment labels), not a CT",
                         "choose the CT volume as input; a label map can be turned into a segmentation in the "
                         "Data module (right-click it: Convert labelmap to segmentation node)")
    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise ValueError(f"Volume '{node.GetName()}' has no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"Volume '{node.GetName()}' has {image.GetNumberOfScalarComponents()} components; "
                         "a single-channel CT is needed")
    nx, ny, nz = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(nz, ny, nx).copy()
    directions = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(directions)
    volume = Volume(
        array, node.GetSpacing(), tuple(LPS_TO_RAS[:3, :3] @ node.GetOrigin()),
        LPS_TO_RAS[:3, :3] @ numpy_matrix(directions)[:3, :3], is_2d=nz == 1, name=node.GetName(),
    )
    if _reads_as_display_slice(node, array):
        volume.intensity = "display"
        if _pixel_spacing_unknown(node, volume):
            volume.metadata["spacing_known"] = False  # as lungseg's reader marks a PNG/JPG
    return volume


def _source_file(node) -> str:
    storage = node.GetStorageNode()
    return (storage.GetFileName() or "") if storage else ""


def _source_is_image_file(node) -> bool:
    return bool(_source_file(node)) and is_image_file(Path(_source_file(node)))


def _pixel_spacing_unknown(node, volume: Volume) -> bool:
    """A PNG/JPG has no pixel spacing (1 mm is assumed); nor has an image put into Slicer from an array without
    a file (e.g. slicer.util.addVolumeFromArray), recognisable by Slicer's default 1 mm spacing."""
    return _source_is_image_file(node) or (not _source_file(node) and volume.spacing == (1.0, 1.0, 1.0))


def _reads_as_display_slice(node, array: np.ndarray) -> bool:
    """True where ``lungseg segment`` (intensity auto) reads 8-bit display values: a PNG/JPG slice with values
    up to 255, as its reader marks them. A single 8-bit slice without such a file (built in Slicer, or from a
    format Slicer reads and lungseg does not) is taken the same way: a CT in HU is never 8-bit."""
    if _source_is_image_file(node):
        return array.size > 0 and array.max() <= 255
    return array.shape[0] == 1 and array.dtype == np.uint8


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
    is the input volume's own grid and the node goes under the volume's parent transform, so the result lines
    up voxel for voxel with the image as displayed. In an existing ``node`` LungSegAI's segments are replaced
    and any other segment is kept: re-running replaces the result instead of piling up nodes.
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
        for spec in SEGMENTS:
            if segmentation.GetSegment(spec.segment_id) is not None:
                segmentation.RemoveSegment(spec.segment_id)
        segmentation.SetSourceRepresentationName(BINARY_LABELMAP)
        # first the transform: the reference geometry is taken in the node's frame, i.e. the volume's own grid
        node.SetAndObserveTransformNodeID(reference_node.GetTransformNodeID())
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
    if labelmap is None:  # e.g. a segment drawn as a closed surface only
        return np.zeros(tuple(reversed(reference_node.GetImageData().GetDimensions())), bool)
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
def shown_value(value: float) -> float:
    """Two decimals, but never fewer than three significant digits: a small infection (0.004% of a lung,
    0.03 mL) must not read as 0 while any voxel of it exists."""
    value = float(value)
    return round(value, 2) if abs(value) >= 1 else float(f"{value:.3g}")


def measurement_rows(
    volumes_ml: Mapping[str, float], lungs: np.ndarray | None, infection: np.ndarray | None
) -> list[dict[str, object]]:
    """Rows of the results table: each segment's volume and the infected percentage of each lung.

    The percentage of a lung is (infection voxels inside that lung) / (that lung's voxels); both come from
    the same grid, so voxel counts give it exactly.
    """
    rows: list[dict[str, object]] = [
        {"Measurement": f"{name} volume", "Value": shown_value(value), "Unit": "mL"}
        for name, value in volumes_ml.items()
    ]
    if lungs is not None and infection is not None:
        infected = infection > 0
        for label, side in ((RIGHT_LUNG, "Right lung"), (LEFT_LUNG, "Left lung")):
            lung = lungs == label
            total = int(lung.sum())
            percent = 100.0 * np.logical_and(lung, infected).sum() / total if total else 0.0
            rows.append({"Measurement": f"{side} infection", "Value": shown_value(percent), "Unit": "%"})
        for label, kind in ((GGO, "Ground-glass opacity"), (CONSOLIDATION, "Consolidation")):
            lung_total = int((lungs > 0).sum())
            part = np.logical_and(infection == label, lungs > 0).sum()
            percent = 100.0 * part / lung_total if lung_total else 0.0
            rows.append({"Measurement": f"{kind} of both lungs", "Value": shown_value(percent), "Unit": "%"})
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
def find_result_nodes(scene: slicer.vtkMRMLScene, class_name: str, referenced, role: str,
                      reference_role: str = SOURCE_ROLE) -> list:
    """The result nodes of ``role`` that refer to ``referenced`` (by default: were made from that volume)."""
    found = []
    for i in range(scene.GetNumberOfNodesByClass(class_name)):
        candidate = scene.GetNthNodeByClass(i, class_name)
        target = candidate.GetNodeReference(reference_role)
        if target is not None and target.GetID() == referenced.GetID() and candidate.GetAttribute(ROLE_ATTRIBUTE) == role:
            found.append(candidate)
    return found


def find_result_node(scene: slicer.vtkMRMLScene, class_name: str, source_node, role: str):
    """The first result node of ``role`` made from ``source_node``, or None."""
    return next(iter(find_result_nodes(scene, class_name, source_node, role)), None)


def source_of(node):
    """The volume a LungSegAI result was made from (None for other nodes, or when that volume is gone)."""
    return node.GetNodeReference(SOURCE_ROLE)


def tag_result(node, source_node, role: str, segmentation=None) -> None:
    """Tie a result to its volume (and a table to its segmentation) by node references."""
    node.SetNodeReferenceID(SOURCE_ROLE, source_node.GetID())
    if segmentation is not None:
        node.SetNodeReferenceID(SEGMENTATION_ROLE, segmentation.GetID())
    node.SetAttribute(ROLE_ATTRIBUTE, role)


# Slices handled per step while fingerprinting: bounds the transient memory to a few slices of the CT.
_FINGERPRINT_SLICES = 8


def content_fingerprint(node: slicer.vtkMRMLSegmentationNode, reference_node) -> str:
    """Digest of the node's name, source representation and each segment's ID, name and voxels.

    Any edit (painting, erasing, adding, removing or renaming a segment, renaming the node) changes it; saving
    and reloading the scene does not: each segment is hashed as its own mask (stored label value compared, so
    shared layers and label values may differ after a reload), cropped to its own voxels and placed by the
    reference grid index of its first corner (so the stored extent may differ too).

    Cheap on the GUI thread: a segment's stored labelmap is read in place, a few slices at a time, and only
    resampled when it is not on the reference grid (e.g. an oversampled segmentation). The node's parent
    transform is not part of it (see :func:`why_not_reused`).
    """
    segmentation = node.GetSegmentation()
    digest = hashlib.sha256(f"{node.GetName()}\0{segmentation.GetSourceRepresentationName()}".encode())
    to_reference = np.linalg.inv(_reference_ijk_to_ras(reference_node))
    for segment_id in segment_ids(node):
        segment = segmentation.GetSegment(segment_id)
        digest.update(f"\0{segment_id}\0{segment.GetName()}\0".encode())
        voxels = _stored_voxels(segment, to_reference)
        if voxels is None:  # not on the reference grid: compare it there
            voxels = segment_array(node, segment_id, reference_node), True, (0, 0, 0)
        _hash_mask(digest, *voxels)
    return digest.hexdigest()


def _stored_voxels(segment, to_reference: np.ndarray):
    """(stored (z, y, x) values read in place, the segment's label value, the (i, j, k) of the first stored voxel
    on the reference grid); (empty, 1, 0s) for a segment without voxels; None when the stored grid is not the
    reference grid shifted by whole voxels."""
    labelmap = segment.GetRepresentation(BINARY_LABELMAP)
    scalars = labelmap.GetPointData().GetScalars() if labelmap is not None else None
    nx, ny, nz = labelmap.GetDimensions() if scalars is not None else (0, 0, 0)
    if min(nx, ny, nz) <= 0:  # an empty segment, or one drawn as a closed surface only
        return np.zeros((0, 0, 0), np.uint8), 1, (0, 0, 0)
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    on_reference = to_reference @ numpy_matrix(matrix)
    shift = on_reference[:3, 3]
    if not (np.allclose(on_reference[:3, :3], np.eye(3), atol=1e-4) and np.allclose(shift, np.round(shift), atol=1e-3)):
        return None
    values = numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx)
    first = np.round(shift).astype(int) + np.array(labelmap.GetExtent()[::2])
    return values, segment.GetLabelValue(), tuple(int(v) for v in first)


def _hash_mask(digest, values: np.ndarray, label, first_ijk) -> None:
    """Add the mask ``values == label`` to ``digest``: its box on the reference grid, then its bits in that box."""
    box = _mask_box(values, label)
    if box is None:
        digest.update(b"empty")
        return
    (z0, z1), (y0, y1), (x0, x1) = box
    i, j, k = first_ijk
    digest.update(f"{i + x0},{j + y0},{k + z0}:{x1 - x0},{y1 - y0},{z1 - z0}".encode())
    for z in range(z0, z1, _FINGERPRINT_SLICES):  # steps start at the mask's first slice: storage-independent
        digest.update(np.packbits(values[z:min(z + _FINGERPRINT_SLICES, z1), y0:y1, x0:x1] == label).tobytes())


def _mask_box(values: np.ndarray, label):
    """((z0, z1), (y0, y1), (x0, x1)) half-open bounds of ``values == label``, or None when it is empty."""
    if values.size == 0:
        return None
    slices = np.zeros(values.shape[0], bool)
    plane = np.zeros(values.shape[1:], bool)
    for z in range(0, values.shape[0], _FINGERPRINT_SLICES):
        mask = values[z:z + _FINGERPRINT_SLICES] == label
        slices[z:z + len(mask)] = mask.any(axis=(1, 2))
        plane |= mask.any(axis=0)
    if not slices.any():
        return None
    return tuple((int(hits[0]), int(hits[-1]) + 1)
                 for hits in (np.flatnonzero(slices), np.flatnonzero(plane.any(1)), np.flatnonzero(plane.any(0))))


def mark_written(node: slicer.vtkMRMLSegmentationNode, reference_node) -> None:
    """Record what LungSegAI wrote, so a later run can tell whether someone changed it since."""
    node.SetAttribute(FINGERPRINT_ATTRIBUTE, content_fingerprint(node, reference_node))


def unchanged_since_written(node: slicer.vtkMRMLSegmentationNode, reference_node) -> bool:
    """True if the node still holds exactly what LungSegAI wrote (False when nothing was recorded)."""
    recorded = node.GetAttribute(FINGERPRINT_ATTRIBUTE)
    return bool(recorded) and recorded == content_fingerprint(node, reference_node)


def why_not_reused(node: slicer.vtkMRMLSegmentationNode, volume_node) -> str:
    """Why this volume's earlier result cannot take the new one ("" if it can): someone edited it, or it holds
    segments of someone's own and is under another transform than the volume (e.g. the CT was moved since):
    writing would put the node under the volume's transform and so move those segments."""
    if not unchanged_since_written(node, volume_node):
        return "was changed after LungSegAI wrote it"
    if _own_segment_ids(node) and node.GetTransformNodeID() != volume_node.GetTransformNodeID():
        return "holds segments LungSegAI did not make and is under another transform than the input volume"
    return ""


def _own_segment_ids(node: slicer.vtkMRMLSegmentationNode) -> list[str]:
    """IDs of the segments someone else made (LungSegAI's own are replaced on every run)."""
    ours = {spec.segment_id for spec in SEGMENTS}
    return [segment_id for segment_id in segment_ids(node) if segment_id not in ours]


def why_segments_cannot_be_added(node: slicer.vtkMRMLSegmentationNode, volume_node) -> str:
    """Why LungSegAI's segments cannot go into someone's own segmentation without touching theirs ("" if they
    can): it was drawn on another volume (its reference geometry), one of LungSegAI's segment IDs is taken, or the
    node would need another parent transform or source representation (either would move or reconvert the
    segments already in it)."""
    drawn_on = node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())
    if drawn_on is not None and drawn_on.GetID() != volume_node.GetID():  # the Segment Editor records its volume
        return f"is a segmentation of '{drawn_on.GetName()}'"
    if not segment_ids(node):
        return ""
    if drawn_on is None and not _recorded_grid_is(node, volume_node):  # e.g. loaded from a .seg.nrrd file
        return f"was drawn on another image grid than '{volume_node.GetName()}'"
    taken = sorted({spec.segment_id for spec in SEGMENTS} & set(segment_ids(node)))
    if taken:
        return f"already has segments with LungSegAI's IDs ({', '.join(taken)})"
    if node.GetTransformNodeID() != volume_node.GetTransformNodeID():
        return "is under another transform than the input volume"
    if node.GetSegmentation().GetSourceRepresentationName() != BINARY_LABELMAP:
        return "is not a labelmap segmentation"
    return ""


def _recorded_grid_is(node: slicer.vtkMRMLSegmentationNode, volume_node) -> bool:
    """Whether the reference geometry a segmentation records (kept in its .seg.nrrd file, where the volume it was
    drawn on is not) is this volume's grid; True when it records none. Two CTs on the very same grid cannot be
    told apart this way; an oversampled segmentation of this CT is taken for another grid (and left alone)."""
    recorded = node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    if not recorded:
        return True
    matrix, extent = vtk.vtkMatrix4x4(), [0] * 6
    if not slicer.vtkSegmentationConverter.DeserializeImageGeometry(recorded, matrix, extent):
        return False
    return (tuple(extent) == tuple(volume_node.GetImageData().GetExtent())
            and np.allclose(numpy_matrix(matrix), _reference_ijk_to_ras(volume_node), atol=1e-4))


def unique_names(scene: slicer.vtkMRMLScene, *bases: str) -> list[str]:
    """``bases`` as they are, else all with the same first free number: ``base (2)``, ``base (3)``, ..."""
    taken = {scene.GetNthNode(i).GetName() for i in range(scene.GetNumberOfNodes())}
    number = 1
    while True:
        names = [base if number == 1 else f"{base} ({number})" for base in bases]
        if not taken.intersection(names):
            return names
        number += 1


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
