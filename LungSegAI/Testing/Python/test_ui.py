"""The .ui file is valid Qt Designer XML and holds every widget and parameter LungSegAI.py relies on."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2]
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LungSegAI.ui"
MODULE_FILE = MODULE_DIR / "LungSegAI.py"
QT_CLASSES = {"QLabel", "QComboBox", "QCheckBox", "QPushButton", "QProgressBar", "QPlainTextEdit", "QSpinBox",
              "QWidget"}


@pytest.fixture(scope="module")
def ui():
    return ET.parse(UI_FILE).getroot()


def _widgets(ui) -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ui.iter("widget")}


def _parameter_fields() -> dict[str, str]:
    """name -> annotation source of the @parameterNodeWrapper class in LungSegAI.py."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "LungSegAIParameterNode":
            return {stmt.target.id: ast.unparse(stmt.annotation) for stmt in node.body
                    if isinstance(stmt, ast.AnnAssign)}
    raise AssertionError("LungSegAIParameterNode not found")


def test_ui_is_qt_designer_xml(ui):
    assert ui.tag == "ui" and ui.get("version") == "4.0"
    assert ui.find("class").text == "LungSegAI"
    top = ui.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "LungSegAI"
    declared = {c.find("class").text for c in ui.iter("customwidget")}
    used = {w.get("class") for w in ui.iter("widget")}
    assert used - QT_CLASSES <= declared, f"custom widgets not declared: {used - QT_CLASSES - declared}"
    names = [w.get("name") for w in ui.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget names"


def test_every_widget_the_module_uses_exists(ui):
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    assert len(used) > 20  # the regex really found the module's widgets
    missing = used - set(_widgets(ui))
    assert not missing, f"LungSegAI.py uses widgets missing from the .ui: {sorted(missing)}"


def test_bound_widgets_name_real_parameters_of_a_fitting_type(ui):
    fields = _parameter_fields()
    bound = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", "dynamic properties must be stdset=0"
                bound[prop.find("string").text] = widget.get("class")
    assert set(bound) <= set(fields), f"unknown parameters: {set(bound) - set(fields)}"
    fitting = {"qMRMLNodeComboBox": ("vtkMRML",), "QComboBox": ("Task", "Device"), "QCheckBox": ("bool",),
               "QSpinBox": ("int",), "ctkPathLineEdit": ("Path",)}
    for parameter, widget_class in bound.items():
        assert any(t in fields[parameter] for t in fitting[widget_class]), (parameter, widget_class)
    # the segmentation panel's persistent state is all bound
    assert {"inputVolume", "task", "device", "show3D", "checkpointPath", "outputSegmentation"} <= set(bound)


def test_mrml_widgets_receive_the_scene(ui):
    receivers = {c.find("receiver").text for c in ui.iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml_widgets = {w.get("name") for w in ui.iter("widget") if w.get("class") in ("qMRMLNodeComboBox", "qMRMLTableView")}
    assert mrml_widgets and mrml_widgets <= receivers


def test_module_defines_module_widget_logic_and_test():
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    classes = {node.name: [ast.unparse(b) for b in node.bases] for node in tree.body if isinstance(node, ast.ClassDef)}
    assert classes["LungSegAI"] == ["ScriptedLoadableModule"]
    assert classes["LungSegAIWidget"][0] == "ScriptedLoadableModuleWidget"
    assert classes["LungSegAILogic"] == ["ScriptedLoadableModuleLogic"]
    assert classes["LungSegAITest"] == ["ScriptedLoadableModuleTest"]
    source = MODULE_FILE.read_text(encoding="utf-8")
    assert 'loadUI(self.resourcePath("UI/LungSegAI.ui"))' in source
    # the Logic must not import qt-only things at call sites used in batch mode
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LungSegAILogic")
    assert "qt." not in ast.unparse(logic)


def test_icon_and_models_resource_exist():
    from PIL import Image

    with Image.open(MODULE_DIR / "Resources" / "Icons" / "LungSegAI.png") as icon:
        assert icon.size == (128, 128)
