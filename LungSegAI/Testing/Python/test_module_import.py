"""LungSegAI.py imports and its Logic works outside the Slicer GUI, with only the Qt/app parts stubbed.

Slicer-only modules (qt, slicer.ScriptedLoadableModule, slicer.parameterNodeWrapper) are replaced by minimal
stand-ins so that class bodies, enums, the parameter-node declaration and the GUI-free Logic methods run.
"""

from __future__ import annotations

import importlib
import json
import sys
import types

import pytest


@pytest.fixture()
def module(monkeypatch):
    slicer = pytest.importorskip("slicer")
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")

    class _Base:
        def __init__(self, *args, **kwargs):
            pass

    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest"):
        setattr(scripted, name, type(name, (_Base,), {}))

    class ScriptedLoadableModuleLogic(_Base):
        def getParameterNode(self):
            return slicer.vtkMRMLScriptedModuleNode()

    scripted.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.WithinRange = lambda low, high: ("WithinRange", low, high)
    qt = types.ModuleType("qt")
    qt.QTimer = type("QTimer", (), {"__init__": lambda self: None})
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.delitem(sys.modules, "LungSegAI", raising=False)
    return importlib.import_module("LungSegAI")


def test_module_declares_enums_and_parameters(module):
    assert [t.value for t in module.Task] == ["all", "lungs", "infection"]
    assert module.Task.lungs.label().startswith("Lungs")
    assert module.Device.cuda.label() == "GPU (CUDA)"
    fields = module.LungSegAIParameterNode.__annotations__
    assert {"inputVolume", "task", "modelId", "device", "epochs", "datasetFolder"} <= set(fields)


def test_logic_resolves_models_and_checkpoints(module, tmp_path):
    logic = module.LungSegAILogic()
    assert {"default", "threshold", "checkpoint"} <= set(logic.modelIds())
    assert logic.resolveModels("threshold") == ("threshold", "threshold")
    card = tmp_path / "mine.json"
    card.write_text(json.dumps({"task": "lungs"}))
    assert logic.resolveModels("checkpoint", str(card)) == (str(card), "default")
    assert logic.resolveModels(str(card)) == (str(card), "default")  # batch: --model PATH/NAME.json


def test_logic_finds_trained_model_card(module, tmp_path):
    logic = module.LungSegAILogic()
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "lungs-mine.json").write_text("{}")
    (tmp_path / "lungs-mine.safetensors").write_bytes(b"0")
    assert logic.trainedModelCard(tmp_path) == str(tmp_path / "lungs-mine.json")


def test_training_panel_offers_only_architectures_the_trainer_trains(module):
    from lungseg_core.models import ARCHITECTURES

    offered = module.LungSegAILogic().architectures()
    assert "unet" in offered and "resunet" in offered
    assert "unet3d" in ARCHITECTURES and "unet3d" not in offered  # 3D networks run at inference only


# --- the segmentation flow through the Logic and the widget (qt stubbed, real MRML scene) ---------------------
def test_load_case_refuses_a_truncated_file_before_slicers_reader(module, monkeypatch, tmp_path, ctchest4_path):
    """Slicer's reader zero-fills a truncated NIfTI without an error; the batch must fail it as the CLI does."""
    import SimpleITK as sitk
    import slicer
    from lungseg_core.errors import InputError

    whole = tmp_path / "whole.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(ctchest4_path)), str(whole))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(whole.read_bytes()[:5000])
    monkeypatch.setattr(slicer.util, "loadVolume", lambda *a, **k: pytest.fail("Slicer's reader was reached"),
                        raising=False)
    with pytest.raises(InputError, match="Cannot read 'truncated.nii.gz': the file is corrupt, truncated"):
        module.LungSegAILogic().loadCase(truncated)


class _Recorder:
    """Stand-in for the Qt widgets the segmentation panel touches."""

    def __init__(self):
        self.lines, self.value = [], 0

    def appendPlainText(self, text):
        self.lines.append(text)

    def setFormat(self, text):
        pass

    def show(self):
        pass

    def hide(self):
        pass

    def setMRMLTableNode(self, node):
        self.table = node


def _widget(module, monkeypatch, logic, parameters):
    import contextlib
    import slicer

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda *a, **k: None)
    widget = module.LungSegAIWidget.__new__(module.LungSegAIWidget)  # no Qt: only what the panel's methods use
    widget.logic, widget._parameterNode = logic, parameters
    widget.ui = types.SimpleNamespace(progressBar=_Recorder(), logTextEdit=_Recorder(), resultsTableView=_Recorder())
    widget._timer = types.SimpleNamespace(start=lambda: None)
    widget._checkCanApply = lambda *a: None
    widget._segmentationTask = None
    return widget


def test_cancel_is_logged_once_not_twice(module, monkeypatch):
    from LungSegAILib.worker import Event

    widget = _widget(module, monkeypatch, None, None)
    widget._segmentationTask = types.SimpleNamespace(
        poll=lambda: [Event("cancelled", message="Cancelled: segmentation cancelled")], running=False)
    widget._handleSegmentationEvents()
    assert widget.ui.logTextEdit.lines == ["Segmentation cancelled."]


def test_apply_writes_into_the_segmentation_picked_in_the_output_selector(module, monkeypatch, phantom):
    import slicer
    from pathlib import Path

    from LungSegAILib import nodes

    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    nodes.ensure_conversion_rules()  # the Slicer application registers them at startup
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my reading")
    mine.GetSegmentation().AddEmptySegment("nodule", "Nodule")
    logic = module.LungSegAILogic()
    monkeypatch.setattr(logic, "setupPythonRequirements", lambda *a, **k: None)
    parameters = types.SimpleNamespace(
        inputVolume=volume_node, task=module.Task.lungs, modelId="threshold", checkpointPath=Path("."),
        device=module.Device.cpu, show3D=False, outputSegmentation=mine)
    widget = _widget(module, monkeypatch, logic, parameters)
    widget.onApplyButton()
    assert widget._segmentationTask.wait(timeout=60)
    widget._handleSegmentationEvents()
    assert parameters.outputSegmentation is mine
    assert nodes.segment_ids(mine) == ["nodule", "right_lung", "left_lung"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    assert widget.ui.logTextEdit.lines[-1].startswith("Done in")


def test_the_logic_logs_a_kept_edited_result_once_per_scene(module, monkeypatch, phantom):
    import slicer

    from LungSegAILib import nodes
    from lungseg_core.inference.pipeline import SegmentationResult

    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    volume_node = nodes.volume_to_node(phantom.ct, scene, "case7")
    logic, logged = module.LungSegAILogic(), []
    logic.logCallback = logged.append
    result = SegmentationResult(phantom.lungs, phantom.infection, {"volumes_ml": {}}, [], {})
    first = logic.importResult(volumeNode=volume_node, result=result, task="lungs", show3D=False)
    first.segmentation.SetName("case7 lungs, checked")  # an edit
    for _ in range(3):
        logic.importResult(volumeNode=volume_node, result=result, task="lungs", show3D=False)
    assert logged == ["'case7 lungs, checked' was changed after LungSegAI wrote it: left as it is; "
                      "the result is in 'case7 lungs (2)'"]
