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
