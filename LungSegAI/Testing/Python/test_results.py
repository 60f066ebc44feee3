"""From a SegmentationResult to scene nodes and to the files `lungseg segment` writes (slicer-core)."""

from __future__ import annotations

import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("slicer_core")

from LungSegAILib import nodes, results  # noqa: E402
from lungseg_core.errors import OutputError  # noqa: E402


def _result(phantom):
    from lungseg_core.inference.pipeline import SegmentationResult

    return SegmentationResult(phantom.lungs, phantom.infection, {"volumes_ml": {}},
                              [{"name": "test", "sha256": ""}], {"lungs": 0.1})


def test_import_result_makes_one_segmentation_and_table_and_replaces_them(phantom):
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    first = results.import_result(scene, volume_node, _result(phantom), "all", show_3d=False)
    assert first.segmentation.GetName() == "case7 lungs"
    assert nodes.segment_ids(first.segmentation) == ["right_lung", "left_lung", "ground_glass_opacity", "consolidation"]
    rows = {r["Measurement"]: r["Value"] for r in nodes.table_to_rows(first.table)}
    right_ml = (phantom.lungs == 1).sum() * phantom.ct.voxel_volume_ml
    assert rows["Right lung volume"] == pytest.approx(right_ml, abs=0.01)
    infected = np.logical_and(phantom.lungs == 1, phantom.infection > 0).sum() / (phantom.lungs == 1).sum()
    assert rows["Right lung infection"] == pytest.approx(100 * infected, abs=0.01)

    second = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False)
    assert second.segmentation is first.segmentation and second.table is first.table
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert nodes.segment_ids(second.segmentation) == ["right_lung", "left_lung"]
    assert "Right lung infection" not in {r["Measurement"] for r in nodes.table_to_rows(second.table)}


def test_too_little_lung_is_said_in_the_log(phantom):
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case8")
    messages = []
    results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False, log=messages.append)
    assert not any("lung found" in message for message in messages)  # the phantom's lungs hold litres
    lowest = np.nonzero(phantom.lungs.any(axis=(1, 2)))[0].min()
    bases = phantom.lungs.copy()
    bases[lowest + 2:] = 0  # the lungs' two lowest slices alone, as in an abdominal CT
    bases_ml = np.count_nonzero(bases) * phantom.ct.voxel_volume_ml
    assert 0 < bases_ml < 250
    result = _result(phantom)
    result.lungs = bases
    results.import_result(scene, volume_node, result, "lungs", show_3d=False, log=messages.append)
    assert any(message.startswith(f"Warning: only {bases_ml:.0f} mL of lung found") for message in messages)


def test_lung_left_out_by_the_lung_step_is_said_in_the_log(phantom):
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case9")
    result = _result(phantom)
    result.lung_notes = ["412 mL of dense tissue beside the lungs looked like lung to the network but was left out"]
    messages = []
    results.import_result(scene, volume_node, result, "lungs", show_3d=False, log=messages.append)
    assert f"Warning: {result.lung_notes[0]}" in messages


def test_import_uses_the_given_volume_calculator(phantom):
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "ct")
    calls = []

    def fake_statistics(segmentation, reference):
        calls.append((segmentation.GetID(), reference.GetID()))
        return {"Right lung": 42.0}

    imported = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False,
                                     volumes_ml=fake_statistics)
    assert calls == [(imported.segmentation.GetID(), volume_node.GetID())]
    assert imported.volumes_ml == {"Right lung": 42.0}


def test_write_case_outputs_matches_lungseg_segment_files(phantom, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    from lungseg_core.io import read_labelmap

    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "ct")
    result = _result(phantom)
    imported = results.import_result(scene, volume_node, result, "all", show_3d=False)
    volume = nodes.node_to_volume(volume_node)
    paths = results.write_case_outputs(imported.segmentation, volume, result, "all", tmp_path, "case1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "case1.json", "case1.seg.nrrd", "case1_infection.nii.gz", "case1_lungs.nii.gz"]
    assert np.array_equal(read_labelmap(paths["lungs"]).array, phantom.lungs)
    assert np.array_equal(read_labelmap(paths["infection"], "infection").array, phantom.infection)
    segmentation = slicerio.read_segmentation(str(paths["segmentation"]))
    assert [s["name"] for s in segmentation["segments"]][:2] == ["Right lung", "Left lung"]
    document = json.loads(paths["json"].read_text())
    assert document["case"] == "case1" and document["task"] == "all"
    assert document["outputs"]["segmentation"] == "case1.seg.nrrd"
    assert document["segmentation_written_by"].startswith("3D Slicer")

    with pytest.raises(OutputError, match="already exist"):
        results.write_case_outputs(imported.segmentation, volume, result, "all", tmp_path, "case1")
    assert len(list(tmp_path.iterdir())) == 4  # nothing added, nothing half-written


def test_segment_node_end_to_end_with_the_classical_method(phantom):
    pytest.importorskip("lungseg_core.models.classical")
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "phantom")
    seen = []
    result, imported, volume = results.segment_node(
        scene, volume_node, "lungs", "threshold", "threshold", "cpu",
        progress=lambda fraction, message: seen.append(fraction), show_3d=False)
    assert seen and seen[-1] == pytest.approx(1.0)
    for label, segment_id in ((1, "right_lung"), (2, "left_lung")):
        mask = nodes.segment_array(imported.segmentation, segment_id, volume_node)
        reference = phantom.lungs == label
        dice = 2 * np.logical_and(mask, reference).sum() / (mask.sum() + reference.sum())
        assert dice > 0.95, (segment_id, dice)


def _dice(a, b) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _segment_names(node) -> list[str]:
    return [node.GetSegmentation().GetSegment(s).GetName() for s in nodes.segment_ids(node)]


# --- defect: CT under a parent transform ----------------------------------------------------------------------
def test_a_ct_under_a_transform_gets_its_result_under_the_same_transform_with_patient_sides(
        ctchest4_path, ctchest4_reference, read_with_slicer):
    """A turn of 180 degrees about S (a display fix or a registration) plus a shift: the result lies on the CT as
    displayed, and "Right lung" is still the patient's right lung of the image."""
    scene = slicer.vtkMRMLScene()
    volume_node = read_with_slicer(scene, ctchest4_path, "CTChest4")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "turn and shift")
    transform.SetMatrixTransformToParent(nodes.vtk_matrix(
        np.array([[-1, 0, 0, 40], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])))
    volume_node.SetAndObserveTransformNodeID(transform.GetID())
    _, imported, _ = results.segment_node(scene, volume_node, "lungs", "threshold", "threshold", "cpu",
                                          show_3d=False)
    assert imported.segmentation.GetTransformNodeID() == transform.GetID()
    for label, segment_id in ((1, "right_lung"), (2, "left_lung")):
        mask = nodes.segment_array(imported.segmentation, segment_id, volume_node)
        assert _dice(mask, ctchest4_reference.array == label) > 0.95, segment_id


# --- defect: results tied by IDs broke on scene import ----------------------------------------------------------
def test_results_stay_with_their_ct_when_a_scene_is_imported_into_another(phantom):
    scene_a = slicer.vtkMRMLScene()
    patient_a = nodes.volume_to_node(phantom.ct, scene_a, "patientA")
    fingerprint = results.import_result(scene_a, patient_a, _result(phantom), "lungs", show_3d=False
                                        ).segmentation.GetAttribute(nodes.FINGERPRINT_ATTRIBUTE)
    scene_a.SetSaveToXMLString(1)
    scene_a.Commit()

    scene_b = slicer.vtkMRMLScene()
    patient_b = nodes.volume_to_node(phantom.ct, scene_b, "patientB")  # takes the ID patient A had
    scene_b.SetLoadFromXMLString(1)
    scene_b.SetSceneXMLString(scene_a.GetSceneXMLString())
    scene_b.Import()
    result_a = scene_b.GetFirstNodeByName("patientA lungs")
    assert nodes.source_of(result_a).GetName() == "patientA"
    assert nodes.find_result_node(scene_b, "vtkMRMLSegmentationNode", patient_b, "segmentation") is None

    imported = results.import_result(scene_b, patient_b, _result(phantom), "all", show_3d=False)
    assert imported.segmentation.GetName() == "patientB lungs"
    # patient A's result is untouched (its voxels live in a file an XML-only import does not read)
    assert result_a.GetAttribute(nodes.FINGERPRINT_ATTRIBUTE) == fingerprint and nodes.segment_ids(result_a) == []


# --- defect: re-running deleted manual edits --------------------------------------------------------------------
def _edit_by_hand(segmentation, volume_node, phantom):
    """What a user does in the Segment Editor: erase half the right lung and add a segment of their own."""
    right = (phantom.lungs == 1).astype(np.uint8)
    right[:, :, : right.shape[2] // 2] = 0
    edited = slicer.vtkSegment()
    edited.DeepCopy(segmentation.GetSegmentation().GetSegment("right_lung"))
    edited.RemoveAllRepresentations()
    edited.AddRepresentation(nodes.BINARY_LABELMAP, nodes._oriented_labelmap(right, nodes._reference_ijk_to_ras(volume_node)))
    segmentation.GetSegmentation().RemoveSegment("right_lung")
    segmentation.GetSegmentation().AddSegment(edited, "right_lung")
    segmentation.GetSegmentation().AddEmptySegment("nodule", "Nodule (manual)")
    return right


def test_rerun_keeps_an_edited_result_and_writes_a_new_node(phantom):
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    first = results.import_result(scene, volume_node, _result(phantom), "all", show_3d=False)
    erased = _edit_by_hand(first.segmentation, volume_node, phantom)
    logged = []
    second = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False, log=logged.append)

    assert second.segmentation is not first.segmentation and second.table is not first.table
    assert second.segmentation.GetName() == "case7 lungs (2)" and second.table.GetName() == "case7 lung measurements (2)"
    assert sorted(_segment_names(first.segmentation)) == [
        "Consolidation", "Ground-glass opacity", "Left lung", "Nodule (manual)", "Right lung"]
    assert np.array_equal(nodes.segment_array(first.segmentation, "right_lung", volume_node), erased == 1)
    assert logged == ["'case7 lungs' was changed after LungSegAI wrote it: left as it is; "
                      "the result is in 'case7 lungs (2)'"]
    # the new result is LungSegAI's own again: the next run replaces it, and still leaves the edited one alone
    third = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False, log=logged.append)
    assert third.segmentation is second.segmentation and third.table is second.table
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 2


def test_output_selector_is_honoured_and_someones_own_segments_are_kept(phantom):
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    nodes.ensure_conversion_rules()  # the Slicer application registers them at startup
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my reading")
    mine.GetSegmentation().AddEmptySegment("nodule", "Nodule")
    imported = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False, output_node=mine)
    assert imported.segmentation is mine and mine.GetName() == "my reading"
    assert _segment_names(mine) == ["Nodule", "Right lung", "Left lung"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


def test_output_selector_never_sends_a_result_into_another_cts_result(phantom):
    """After a run on A the selector shows 'A lungs'; Apply on B must not overwrite it."""
    scene = slicer.vtkMRMLScene()
    patient_a = nodes.volume_to_node(phantom.ct, scene, "A")
    patient_b = nodes.volume_to_node(phantom.ct, scene, "B")
    result_a = results.import_result(scene, patient_a, _result(phantom), "lungs", show_3d=False).segmentation
    fingerprint = result_a.GetAttribute(nodes.FINGERPRINT_ATTRIBUTE)
    logged = []
    result_b = results.import_result(scene, patient_b, _result(phantom), "all", show_3d=False,
                                     output_node=result_a, log=logged.append).segmentation
    assert result_b is not result_a and result_b.GetName() == "B lungs"
    assert result_a.GetAttribute(nodes.FINGERPRINT_ATTRIBUTE) == fingerprint
    assert nodes.unchanged_since_written(result_a, patient_a)
    assert logged == ["Output 'A lungs' is the result of 'A': left as it is; the result is in 'B lungs'"]


def test_output_selector_never_sends_a_result_into_someones_segmentation_of_another_ct(phantom):
    """A user's own reading of CT A, still shown in the selector, must not receive B's lungs."""
    scene = slicer.vtkMRMLScene()
    patient_a = nodes.volume_to_node(phantom.ct, scene, "A")
    patient_b = nodes.volume_to_node(phantom.ct, scene, "B")
    nodes.ensure_conversion_rules()
    reading_a = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my reading of A")
    reading_a.SetReferenceImageGeometryParameterFromVolumeNode(patient_a)  # what the Segment Editor does
    reading_a.GetSegmentation().AddEmptySegment("nodule", "Nodule")
    logged = []
    result_b = results.import_result(scene, patient_b, _result(phantom), "lungs", show_3d=False,
                                     output_node=reading_a, log=logged.append).segmentation
    assert result_b is not reading_a and _segment_names(reading_a) == ["Nodule"]
    assert logged == ["Output 'my reading of A' is a segmentation of 'A': left as it is; the result is in 'B lungs'"]
    empty_reading_a = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty reading of A")
    empty_reading_a.SetReferenceImageGeometryParameterFromVolumeNode(patient_a)
    again = results.import_result(scene, patient_b, _result(phantom), "lungs", show_3d=False,
                                  output_node=empty_reading_a, log=logged.append).segmentation
    assert again is not empty_reading_a and not nodes.segment_ids(empty_reading_a)


def test_two_cts_with_the_same_name_get_distinct_result_names(phantom):
    scene = slicer.vtkMRMLScene()
    names = []
    for _ in range(2):
        volume_node = nodes.volume_to_node(phantom.ct, scene, "CTChest4")
        imported = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False)
        names.append((imported.segmentation.GetName(), imported.table.GetName()))
    assert names == [("CTChest4 lungs", "CTChest4 lung measurements"),
                     ("CTChest4 lungs (2)", "CTChest4 lung measurements (2)")]


# --- defect: a truncated CT gave "ok" with 0 mL ----------------------------------------------------------------
def test_a_truncated_ct_read_by_slicer_fails_instead_of_giving_0_ml(ctchest4_path, tmp_path, read_with_slicer):
    import SimpleITK as sitk
    from lungseg_core.errors import InputError

    whole = tmp_path / "whole.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(ctchest4_path)), str(whole))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(whole.read_bytes()[:5000])
    scene = slicer.vtkMRMLScene()
    volume_node = read_with_slicer(scene, truncated, "truncated")  # Slicer's reader: no error, mostly zeros
    with pytest.raises(InputError, match="No lung was found in 'truncated'.*truncated or corrupt"):
        results.segment_node(scene, volume_node, "all", "threshold", "threshold", "cpu", show_3d=False)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


# --- defect: 8-bit slices refused, CLI advice in Slicer ---------------------------------------------------------
def test_an_8bit_png_slice_is_segmented_as_lungseg_segment_does(phantom, tmp_path):
    from test_nodes import grey_slice_node

    from lungseg_core.inference import segment_volume
    from lungseg_core.io import read_volume

    scene = slicer.vtkMRMLScene()
    volume_node = grey_slice_node(scene, phantom, tmp_path / "slice.png")
    result, imported, _ = results.segment_node(scene, volume_node, "all", "threshold", "threshold", "cpu",
                                               show_3d=False)
    cli = segment_volume(read_volume(tmp_path / "slice.png"), "all", "threshold", "threshold", "cpu")
    assert result.intensity == cli.intensity == "display"
    assert (cli.lungs > 0).any()
    assert np.array_equal(result.lungs, cli.lungs) and np.array_equal(result.infection, cli.infection)


def test_advice_names_what_to_do_in_slicer_not_a_cli_option(phantom):
    from lungseg_core.errors import InputError

    scene = slicer.vtkMRMLScene()
    windowed = np.clip((phantom.ct.array + 1350) / 1500 * 255, 0, 255).astype(np.uint8)  # an 8-bit 3D volume
    volume_node = nodes.volume_to_node(phantom.ct.with_array(windowed), scene, "8-bit")
    with pytest.raises(InputError) as raised:
        results.segment_node(scene, volume_node, "lungs", "threshold", "threshold", "cpu", show_3d=False)
    assert "--intensity" not in str(raised.value)
    assert "segmentNode(volumeNode, intensity='display')" in str(raised.value)
    # the same choice the CLI offers, from the Logic: the volume is then segmented
    result, _, _ = results.segment_node(scene, volume_node, "lungs", "threshold", "threshold", "cpu",
                                        show_3d=False, intensity="display")
    assert result.intensity == "display" and (result.lungs > 0).any()


# --- review: a file-loaded segmentation of another CT, moved user segments, repeated notices, fingerprint cost --
def _shifted(phantom, mm: float):
    """The phantom CT on another grid (another patient's scan: origin 40 mm away)."""
    from lungseg_core.io.volume import Volume

    ct = phantom.ct
    return Volume(ct.array, ct.spacing, tuple(np.add(ct.origin, (mm, 0, 0))), ct.direction, name="B")


def test_output_selector_never_sends_a_result_into_a_loaded_segmentation_of_another_ct(phantom, tmp_path):
    """A .seg.nrrd drawn on CT A and loaded from its file names no volume, only A's grid: B's lungs stay out."""
    scene = slicer.vtkMRMLScene()
    patient_a = nodes.volume_to_node(phantom.ct, scene, "A")
    patient_b = nodes.volume_to_node(_shifted(phantom, 40.0), scene, "B")
    nodes.ensure_conversion_rules()
    drawn = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reading of A")
    drawn.SetReferenceImageGeometryParameterFromVolumeNode(patient_a)
    drawn.GetSegmentation().AddEmptySegment("nodule", "Nodule")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(nodes.save_segmentation(drawn, tmp_path / "a.seg.nrrd")))
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reading of A (file)")
    assert storage.ReadData(loaded) and loaded.GetNodeReference(loaded.GetReferenceImageGeometryReferenceRole()) is None
    logged = []
    result_b = results.import_result(scene, patient_b, _result(phantom), "lungs", show_3d=False,
                                     output_node=loaded, log=logged.append).segmentation
    assert result_b is not loaded and _segment_names(loaded) == ["Nodule"]
    assert logged == ["Output 'reading of A (file)' was drawn on another image grid than 'B': left as it is; "
                      "the result is in 'B lungs'"]
    # on its own CT the same file is taken, the user's segment kept
    into_a = results.import_result(scene, patient_a, _result(phantom), "lungs", show_3d=False, output_node=loaded)
    assert into_a.segmentation is loaded and _segment_names(loaded) == ["Nodule", "Right lung", "Left lung"]


def _moved(scene, volume_node):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    transform.SetMatrixTransformToParent(nodes.vtk_matrix(np.array(
        [[1, 0, 0, 25.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])))
    volume_node.SetAndObserveTransformNodeID(transform.GetID())
    return transform


@pytest.mark.parametrize("selector", ["the reading", "empty"])
def test_reusing_an_unchanged_result_never_moves_segments_the_user_added(phantom, selector):
    """LungSegAI wrote into the user's reading; later the CT (not the reading) is put under a transform. A re-run
    must not move the reading (and its nodule) under the CT's transform: the result goes to a new node."""
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    nodes.ensure_conversion_rules()
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my reading")
    mine.GetSegmentation().AddEmptySegment("nodule", "Nodule")
    results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False, output_node=mine)
    transform = _moved(scene, volume_node)
    logged = []
    again = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False, log=logged.append,
                                  output_node=mine if selector == "the reading" else None).segmentation
    assert again is not mine and mine.GetTransformNodeID() is None
    assert again.GetTransformNodeID() == transform.GetID()
    assert logged == [f"{'Output ' if selector == 'the reading' else ''}'my reading' holds segments LungSegAI did not "
                      "make and is under another transform than the input volume: left as it is; the result is in "
                      "'case7 lungs (2)'"]  # numbered with its table: 'case7 lung measurements' describes the reading


def test_an_unchanged_result_of_lungsegai_alone_follows_its_ct_under_a_transform(phantom):
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    first = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False).segmentation
    transform = _moved(scene, volume_node)
    again = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False).segmentation
    assert again is first and first.GetTransformNodeID() == transform.GetID()


def test_a_kept_edited_result_is_reported_once_not_on_every_apply(phantom):
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    first = results.import_result(scene, volume_node, _result(phantom), "all", show_3d=False)
    _edit_by_hand(first.segmentation, volume_node, phantom)
    logged, reported = [], set()
    for _ in range(3):
        results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False, log=logged.append,
                              reported=reported)
    assert logged == ["'case7 lungs' was changed after LungSegAI wrote it: left as it is; "
                      "the result is in 'case7 lungs (2)'"]


def test_an_apply_fingerprints_each_node_once_to_check_and_once_to_mark(phantom, monkeypatch):
    """The fingerprint reads every segment's voxels on the GUI thread: never twice for the same node per Apply
    (here the selector shows the CT's edited result, which is both the chosen output and an earlier result)."""
    scene = slicer.vtkMRMLScene()
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    edited = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False).segmentation
    edited.SetName("case7 lungs, checked")
    computed = []
    fingerprint = nodes.content_fingerprint
    monkeypatch.setattr(nodes, "content_fingerprint",
                        lambda node, reference: computed.append(node.GetID()) or fingerprint(node, reference))
    new = results.import_result(scene, volume_node, _result(phantom), "lungs", show_3d=False,
                                output_node=edited).segmentation
    assert new is not edited and computed == [edited.GetID(), new.GetID()]  # the check, then the mark
