"""Make LungSegAILib, batch_segment and lungseg_core importable, and share fixtures with lungseg_core's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


MODULE_DIR = Path(__file__).resolve().parents[2]  # LungSegAI/
REPO_ROOT = MODULE_DIR.parent
for path in (str(REPO_ROOT), str(MODULE_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)


# The core test suite's fixtures (phantom, CTChest4 and its reference labels), shared rather than copied.
from lungseg_core.tests.conftest import ctchest4_path, ctchest4_reference, phantom  # noqa: E402,F401


@pytest.fixture()
def read_with_slicer():
    """``read(scene, path, name)``: a volume node read by Slicer's own reader (vtkMRMLVolumeArchetypeStorageNode,
    what Add Data and slicer.util.loadVolume use), with its storage node, as in the Slicer application."""
    def read(scene, path, name="ct"):
        import slicer

        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        scene.AddNode(storage)
        storage.SetFileName(str(path))
        storage.SetSingleFile(True)
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        node.SetAndObserveStorageNodeID(storage.GetID())
        assert storage.ReadData(node), path
        return node

    return read
