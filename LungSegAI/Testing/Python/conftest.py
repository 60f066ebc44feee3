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


@pytest.fixture(scope="session")
def phantom():
    from lungseg_core.synthetic import make_chest_phantom

    return make_chest_phantom()


@pytest.fixture(scope="session")
def ctchest4_path() -> Path:
    slicerio = pytest.importorskip("slicerio")
    return Path(slicerio.get_testdata_file("CTChest4.nrrd"))


@pytest.fixture(scope="session")
def ctchest4_reference():
    slicerio = pytest.importorskip("slicerio")
    from lungseg_core.io import read_labelmap

    return read_labelmap(slicerio.get_testdata_file("Segmentation.seg.nrrd"), "lungs")
