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
