"""The MRML bridge against Slicer's real classes (slicer-core wheel): geometry, segments, surfaces, files."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer_core")

from LungSegAILib import nodes  # noqa: E402
from lungseg_core.labels import SEGMENTS  # noqa: E402
from lungseg_core.synthetic.phantoms import flip_axes  # noqa: E402


@pytest.fixture()
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture(scope="module")
def phantom_scene(phantom):
    """One scene with the phantom CT and its lungs + infection segmentation (built once: surfaces are slow)."""
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "phantom")
    segmentation = nodes.labelmaps_to_segmentation(
        scene, volume_node, {"lungs": phantom.lungs, "infection": phantom.infection}, "phantom lungs")
    return scene, volume_node, segmentation


def _ras_of_voxel(node, ijk) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array(matrix.MultiplyPoint(list(ijk) + [1.0]))[:3]


@pytest.mark.parametrize("flips", [(False, False, False), (True, False, True), (False, True, False)])
def test_volume_round_trip_keeps_every_voxel_in_place(scene, phantom, flips):
    ct = flip_axes(phantom.ct, flips)
    node = nodes.volume_to_node(ct, scene, "ct")
    back = nodes.node_to_volume(node)
    assert np.array_equal(back.array, ct.array)
    assert back.same_geometry(ct)
    # a voxel's RAS position in Slicer is its LPS position with x and y negated
    zyx = np.array([5, 17, 30])
    lps = ct.zyx_to_lps(zyx[None])[0]
    assert np.allclose(_ras_of_voxel(node, zyx[::-1]), lps * [-1, -1, 1])


def test_node_loaded_by_slicer_matches_lungseg_reader(scene, ctchest4_path):
    """Independent check of RAS<->LPS: Slicer's own NRRD reader vs lungseg_core's SimpleITK reader."""
    from lungseg_core.io import read_volume

    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CTChest4")
    storage.SetFileName(str(ctchest4_path))
    assert storage.ReadData(node)
    from_slicer = nodes.node_to_volume(node)
    from_core = read_volume(ctchest4_path)
    assert from_slicer.same_geometry(from_core)
    assert np.array_equal(from_slicer.array, from_core.array)


def test_segments_have_names_colours_terminology_and_exact_voxels(phantom_scene, phantom):
    scene, volume_node, segmentation = phantom_scene
    assert nodes.segment_ids(segmentation) == [s.segment_id for s in SEGMENTS]
    for spec in SEGMENTS:
        segment = segmentation.GetSegmentation().GetSegment(spec.segment_id)
        assert segment.GetName() == spec.name
        assert np.allclose(segment.GetColor(), spec.color)
        assert segment.GetTerminology() == nodes.terminology_string(spec)
        source = phantom.lungs if spec.task == "lungs" else phantom.infection
        mask = nodes.segment_array(segmentation, spec.segment_id, volume_node)
        assert mask.shape == phantom.ct.shape
        assert np.array_equal(mask, source == spec.label), spec.name


def test_terminology_string_is_what_slicerio_parses(phantom):
    segmentation_io = pytest.importorskip("slicerio.segmentation")
    for spec in SEGMENTS:
        assert segmentation_io.terminology_entry_from_string(nodes.terminology_string(spec)) == spec.terminology


def test_reference_geometry_is_the_input_volume(phantom_scene):
    import vtk

    scene, volume_node, segmentation = phantom_scene
    serialized = segmentation.GetSegmentation().GetConversionParameter("Reference image geometry")
    geometry = slicer.vtkOrientedImageData()
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(serialized, geometry)
    assert geometry.GetExtent() == volume_node.GetImageData().GetExtent()
    expected, actual = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(expected)
    geometry.GetImageToWorldMatrix(actual)
    assert np.allclose(nodes.numpy_matrix(actual), nodes.numpy_matrix(expected))
    role = segmentation.GetReferenceImageGeometryReferenceRole()
    assert segmentation.GetNodeReferenceID(role) == volume_node.GetID()


def test_lung_surfaces_enclose_the_voxel_volume_within_2_percent(phantom_scene, phantom):
    scene, volume_node, segmentation = phantom_scene
    voxel_ml = phantom.ct.voxel_volume_ml
    for spec in SEGMENTS[:2]:
        voxels = (phantom.lungs == spec.label).sum() * voxel_ml
        surface = nodes.closed_surface_volume_ml(segmentation, spec.segment_id)
        assert surface == pytest.approx(voxels, rel=0.02), spec.name
    display = segmentation.GetDisplayNode()
    assert display.GetVisibility3D() and display.GetPreferredDisplayRepresentationName3D() == nodes.CLOSED_SURFACE


def test_ctchest4_lung_surfaces_within_2_percent(scene, ctchest4_path, ctchest4_reference):
    from lungseg_core.io import read_volume

    ct = read_volume(ctchest4_path)
    node = nodes.volume_to_node(ct, scene, "CTChest4")
    segmentation = nodes.labelmaps_to_segmentation(scene, node, {"lungs": ctchest4_reference.array})
    for label, segment_id in ((1, "right_lung"), (2, "left_lung")):
        voxels = (ctchest4_reference.array == label).sum() * ct.voxel_volume_ml
        assert voxels > 500  # a real lung, not an empty segment
        assert nodes.closed_surface_volume_ml(segmentation, segment_id) == pytest.approx(voxels, rel=0.02)


def test_volumes_count_voxels(phantom_scene, phantom):
    scene, volume_node, segmentation = phantom_scene
    volumes = nodes.segment_volumes_ml(segmentation, volume_node)
    assert volumes["Right lung"] == pytest.approx((phantom.lungs == 1).sum() * phantom.ct.voxel_volume_ml)
    assert volumes["Consolidation"] == pytest.approx((phantom.infection == 2).sum() * phantom.ct.voxel_volume_ml)


def test_seg_nrrd_written_by_slicer_reads_back_with_slicerio(phantom_scene, phantom, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    from lungseg_core.io import read_labelmap

    scene, volume_node, segmentation = phantom_scene
    path = nodes.save_segmentation(segmentation, tmp_path / "case.seg.nrrd")
    assert [p.name for p in tmp_path.iterdir()] == ["case.seg.nrrd"]  # no temporary left behind
    data = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in data["segments"]] == [s.name for s in SEGMENTS]
    assert [s["terminology"] for s in data["segments"]] == [s.terminology for s in SEGMENTS]
    assert np.allclose(data["ijkToLPS"], phantom.ct.ijk_to_lps())
    assert np.array_equal(read_labelmap(path, "lungs").array, phantom.lungs)
    assert np.array_equal(read_labelmap(path, "infection").array, phantom.infection)


def test_save_refuses_wrong_suffix(phantom_scene, tmp_path):
    with pytest.raises(ValueError, match="seg.nrrd"):
        nodes.save_segmentation(phantom_scene[2], tmp_path / "case.nrrd")


def test_reusing_a_node_replaces_its_segments(scene, phantom):
    node = nodes.volume_to_node(phantom.ct, scene, "ct")
    first = nodes.labelmaps_to_segmentation(scene, node, {"lungs": phantom.lungs, "infection": phantom.infection},
                                            closed_surface=False)
    again = nodes.labelmaps_to_segmentation(scene, node, {"lungs": phantom.lungs}, node=first, closed_surface=False)
    assert again is first
    assert nodes.segment_ids(again) == ["right_lung", "left_lung"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


def test_wrong_shape_labelmap_is_refused(scene, phantom):
    node = nodes.volume_to_node(phantom.ct, scene, "ct")
    with pytest.raises(ValueError, match="shape"):
        nodes.labelmaps_to_segmentation(scene, node, {"lungs": phantom.lungs[:-1]}, closed_surface=False)


def test_measurement_rows_give_infected_share_of_each_lung():
    lungs = np.zeros((1, 4, 10), np.uint8)
    lungs[0, :, :5] = 1  # right lung: 20 voxels
    lungs[0, :, 5:] = 2  # left lung: 20 voxels
    infection = np.zeros_like(lungs)
    infection[0, 0, :5] = 1  # 5 GGO voxels in the right lung -> 25 %
    infection[0, :2, 5] = 2  # 2 consolidation voxels in the left lung -> 10 %
    rows = {r["Measurement"]: r["Value"] for r in nodes.measurement_rows({"Right lung": 1.5}, lungs, infection)}
    assert rows["Right lung volume"] == 1.5
    assert rows["Right lung infection"] == 25.0
    assert rows["Left lung infection"] == 10.0
    assert rows["Ground-glass opacity of both lungs"] == 12.5
    assert rows["Consolidation of both lungs"] == 5.0


def test_a_small_infection_never_reads_as_zero_in_the_table():
    lungs = np.ones((1, 100, 100), np.uint8)  # 10,000 voxels of right lung
    infection = np.zeros_like(lungs)
    infection[0, 0, 0] = 1  # one voxel: 0.01 %
    rows = {r["Measurement"]: r["Value"] for r in
            nodes.measurement_rows({"Right lung": 3208.0834, "Ground-glass opacity": 0.0042}, lungs, infection)}
    assert rows["Right lung infection"] == 0.01 and rows["Ground-glass opacity of both lungs"] == 0.01
    assert rows["Ground-glass opacity volume"] == 0.0042  # round(..., 2) gave 0.0
    assert rows["Right lung volume"] == 3208.08
    three_in_100000 = np.zeros((1, 1000, 100), np.uint8)
    three_in_100000[0, 0, :3] = 1
    tiny = nodes.measurement_rows({}, np.ones((1, 1000, 100), np.uint8), three_in_100000)
    assert {r["Measurement"]: r["Value"] for r in tiny}["Right lung infection"] == 0.003


def test_table_round_trip_and_replacement(scene):
    rows = [{"Measurement": "Right lung volume", "Value": 1234.5, "Unit": "mL"},
            {"Measurement": "Left lung volume", "Value": 1100.0, "Unit": "mL"}]
    table = nodes.rows_to_table(scene, rows, "measurements")
    assert nodes.table_to_rows(table) == rows
    again = nodes.rows_to_table(scene, rows[:1], "measurements", node=table)
    assert again is table and nodes.table_to_rows(again) == rows[:1]


def test_result_is_placed_in_the_inputs_study(scene, phantom):
    node = nodes.volume_to_node(phantom.ct, scene, "ct")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1")
    study = sh.CreateStudyItem(patient, "Study 1")
    sh.CreateItem(study, node)  # the Slicer app does this on load; a bare scene does not
    segmentation = nodes.labelmaps_to_segmentation(scene, node, {"lungs": phantom.lungs}, closed_surface=False)
    assert nodes.place_beside(scene, segmentation, node) == study
    assert sh.GetItemParent(sh.GetItemByDataNode(segmentation)) == study


def test_find_result_node_matches_source_and_role(scene, phantom):
    a = nodes.volume_to_node(phantom.ct, scene, "a")
    b = nodes.volume_to_node(phantom.ct, scene, "b")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "t")
    nodes.tag_result(table, a, "measurements")
    assert nodes.find_result_node(scene, "vtkMRMLTableNode", a, "measurements") is table
    assert nodes.find_result_node(scene, "vtkMRMLTableNode", b, "measurements") is None
    assert nodes.find_result_node(scene, "vtkMRMLTableNode", a, "segmentation") is None


# --- geometry: the volume's own frame, the core reader's numbers ---------------------------------------------
def _put_under_rotation(scene, node, shift_r_mm: float = 40.0):
    """A parent transform turning the image 180 degrees about S and shifting it (a registration or display fix)."""
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "turn and shift")
    matrix = np.array([[-1, 0, 0, shift_r_mm], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    transform.SetMatrixTransformToParent(nodes.vtk_matrix(matrix))
    node.SetAndObserveTransformNodeID(transform.GetID())
    return transform


def test_node_to_volume_is_the_volumes_own_grid_whatever_its_parent_transform(scene, phantom):
    node = nodes.volume_to_node(phantom.ct, scene, "ct")
    _put_under_rotation(scene, node)
    volume = nodes.node_to_volume(node)
    assert np.allclose(volume.ijk_to_lps(), phantom.ct.ijk_to_lps(), atol=1e-9)


def test_spacing_and_direction_are_the_core_readers_to_the_last_bit(scene, tmp_path, ctchest4_path, read_with_slicer):
    """Slicer's reader gave 1.4062499999999998 where lungseg's gives 1.40625 (and 1.4062500000000002 for an
    oblique NRRD); that float noise moved midline voxels to the other lung. Both must see the same numbers."""
    import SimpleITK as sitk
    from lungseg_core.io import read_volume

    image = sitk.ReadImage(str(ctchest4_path))
    image.SetSpacing((1.40625, 1.40625, 2.5))
    oblique = sitk.Image(image)
    turn = np.deg2rad(20)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]])
    oblique.SetDirection(tuple((rotation @ np.array(image.GetDirection()).reshape(3, 3)).ravel()))
    for name, written in (("ct.nii.gz", image), ("oblique.nrrd", oblique)):
        sitk.WriteImage(written, str(tmp_path / name))
        from_slicer = nodes.node_to_volume(read_with_slicer(scene, tmp_path / name))
        from_core = read_volume(tmp_path / name)
        assert from_slicer.spacing == from_core.spacing == (1.40625, 1.40625, 2.5), name
        assert np.allclose(from_slicer.direction, from_core.direction, atol=1e-12), name
        assert np.array_equal(from_slicer.array, from_core.array), name


# --- what kind of image the input is --------------------------------------------------------------------------
def test_a_label_map_node_is_refused_as_input_with_what_to_do(scene, phantom):
    from lungseg_core.errors import InputError

    node = nodes.volume_to_node(phantom.ct.with_array(phantom.lungs), scene, "old lungs", labelmap=True)
    with pytest.raises(InputError, match="label map.*not a CT.*choose the CT volume"):
        nodes.node_to_volume(node)


def _grey_slice(phantom) -> np.ndarray:
    """A phantom slice through the lungs, exported in the lung window as 8-bit grey levels (like COVID-SemiSeg)."""
    hu = phantom.ct.array[phantom.ct.shape[0] // 2].astype(float)
    return np.clip((hu + 1350) / 1500 * 255, 0, 255).astype(np.uint8)


def grey_slice_node(scene, phantom, path):
    """The node Add Data makes of a grey PNG/JPG: one 8-bit slice, 1 mm pixels, LPS identity, the file kept."""
    from PIL import Image

    grey = _grey_slice(phantom)
    Image.fromarray(grey).save(path)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "slice")
    node.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    node.SetAndObserveImageData(nodes._image_data(grey[np.newaxis]))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def test_an_8bit_image_slice_is_marked_as_lungsegs_reader_marks_it(scene, phantom, tmp_path):
    from lungseg_core.io import read_volume

    from_slicer = nodes.node_to_volume(grey_slice_node(scene, phantom, tmp_path / "slice.png"))
    from_core = read_volume(tmp_path / "slice.png")
    for volume in (from_slicer, from_core):
        assert (volume.intensity, volume.is_2d, volume.spacing_known) == ("display", True, False)
    assert from_slicer.same_geometry(from_core) and np.array_equal(from_slicer.array, from_core.array)
    # an image put into the scene from an array has no file either: read alike
    array_node = nodes.volume_to_node(from_core.with_array(from_core.array.astype(np.uint8)), scene, "from array")
    assert nodes.node_to_volume(array_node).intensity == "display"
    # a CT is never 8-bit: a HU slice stays HU
    assert nodes.node_to_volume(nodes.volume_to_node(phantom.ct, scene, "ct")).intensity == "hu"


# --- results tied by references, never overwriting edits -----------------------------------------------------
def test_results_are_tied_by_node_references_not_by_id_attributes(scene, phantom):
    volume_node = nodes.volume_to_node(phantom.ct, scene, "a")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "t")
    nodes.tag_result(table, volume_node, "measurements")
    assert table.GetNodeReference(nodes.SOURCE_ROLE) is volume_node
    assert table.GetAttribute(nodes.SOURCE_ATTRIBUTE) is None
    # a result of an older version names its volume only by an attribute: not trusted (IDs change on import)
    legacy = scene.AddNewNodeByClass("vtkMRMLTableNode", "old")
    legacy.SetAttribute(nodes.SOURCE_ATTRIBUTE, volume_node.GetID())
    legacy.SetAttribute(nodes.ROLE_ATTRIBUTE, "measurements")
    assert nodes.find_result_nodes(scene, "vtkMRMLTableNode", volume_node, "measurements") == [table]


def test_fingerprint_changes_with_any_edit_and_not_with_a_save_and_reload(scene, phantom, tmp_path):
    volume_node = nodes.volume_to_node(phantom.ct, scene, "ct")
    segmentation = nodes.labelmaps_to_segmentation(
        scene, volume_node, {"lungs": phantom.lungs, "infection": phantom.infection}, "ct lungs", closed_surface=False)
    nodes.mark_written(segmentation, volume_node)
    assert nodes.unchanged_since_written(segmentation, volume_node)

    path = nodes.save_segmentation(segmentation, tmp_path / "ct.seg.nrrd")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    reloaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ct lungs")
    assert storage.ReadData(reloaded)
    reloaded.SetAttribute(nodes.FINGERPRINT_ATTRIBUTE, segmentation.GetAttribute(nodes.FINGERPRINT_ATTRIBUTE))
    assert nodes.unchanged_since_written(reloaded, volume_node)  # stored as other layers and label values

    erased = phantom.lungs.copy()
    erased[erased.shape[0] // 2] = 0  # the user erased one slice of the lungs
    nodes.labelmaps_to_segmentation(scene, volume_node, {"lungs": erased}, node=reloaded, closed_surface=False)
    assert not nodes.unchanged_since_written(reloaded, volume_node)
    segmentation.SetName("ct lungs, checked by Dr X")
    assert not nodes.unchanged_since_written(segmentation, volume_node)


def test_reusing_a_node_keeps_segments_lungsegai_did_not_make(scene, phantom):
    volume_node = nodes.volume_to_node(phantom.ct, scene, "ct")
    nodes.ensure_conversion_rules()  # the Slicer application registers them at startup
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    node.GetSegmentation().AddEmptySegment("nodule", "Nodule")
    nodes.labelmaps_to_segmentation(scene, volume_node, {"lungs": phantom.lungs}, node=node, closed_surface=False)
    assert nodes.segment_ids(node) == ["nodule", "right_lung", "left_lung"]


def test_unique_names_number_a_result_and_its_table_alike(scene):
    scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CT lungs")
    scene.AddNewNodeByClass("vtkMRMLTableNode", "CT lung measurements (2)")
    assert nodes.unique_names(scene, "CT lungs", "CT lung measurements") == [
        "CT lungs (3)", "CT lung measurements (3)"]
    assert nodes.unique_names(scene, "other lungs") == ["other lungs"]


def test_fingerprint_reads_segments_in_place_and_sees_a_one_voxel_shift(scene, phantom, tmp_path, monkeypatch):
    """Cheap on the GUI thread: segments on the volume's grid (as written, and as reloaded with other extents and
    label values) are read in place, never resampled to the whole CT grid; a segment moved by one voxel, with the
    very same voxels, is still an edit."""
    volume_node = nodes.volume_to_node(phantom.ct, scene, "ct")
    segmentation = nodes.labelmaps_to_segmentation(
        scene, volume_node, {"lungs": phantom.lungs, "infection": phantom.infection}, "ct lungs", closed_surface=False)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(nodes.save_segmentation(segmentation, tmp_path / "ct.seg.nrrd")))
    reloaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ct lungs")
    assert storage.ReadData(reloaded)
    with monkeypatch.context() as patched:
        patched.setattr(nodes, "segment_array", lambda *a: pytest.fail("resampled onto the CT grid"))
        written = nodes.content_fingerprint(segmentation, volume_node)
        assert nodes.content_fingerprint(reloaded, volume_node) == written
    shifted = np.roll(phantom.lungs, 1, axis=2)  # the same lungs one voxel to the side
    nodes.labelmaps_to_segmentation(scene, volume_node, {"lungs": shifted}, node=reloaded, closed_surface=False)
    nodes.labelmaps_to_segmentation(scene, volume_node, {"lungs": shifted}, node=segmentation, closed_surface=False)
    moved = nodes.content_fingerprint(segmentation, volume_node)
    assert moved != written and moved == nodes.content_fingerprint(reloaded, volume_node)


def test_fingerprint_of_a_segment_on_another_grid_still_sees_an_edit(scene, phantom):
    """An oversampled segment (not on the volume's grid) is compared on the volume's grid: an edit still counts."""
    volume_node = nodes.volume_to_node(phantom.ct, scene, "ct")
    segmentation = nodes.labelmaps_to_segmentation(scene, volume_node, {"lungs": phantom.lungs}, "ct lungs",
                                                   closed_surface=False)
    fine = nodes._reference_ijk_to_ras(volume_node) @ np.diag([0.5, 0.5, 0.5, 1.0])  # half the voxel size
    upsampled = phantom.lungs.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    segment = segmentation.GetSegmentation().GetSegment("right_lung")
    segment.RemoveAllRepresentations()
    segment.AddRepresentation(nodes.BINARY_LABELMAP, nodes._oriented_labelmap(upsampled, fine))
    before = nodes.content_fingerprint(segmentation, volume_node)
    middle = phantom.lungs.shape[0] // 2
    upsampled[2 * middle:2 * middle + 2] = 0  # erase two fine slices: one slice of the volume's grid
    segment.RemoveAllRepresentations()
    segment.AddRepresentation(nodes.BINARY_LABELMAP, nodes._oriented_labelmap(upsampled, fine))
    assert nodes.content_fingerprint(segmentation, volume_node) != before
