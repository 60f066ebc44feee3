"""Shared fixtures: synthetic phantoms, the real CTChest4 sample, and ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lungseg_core.synthetic import make_chest_phantom

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("LUNGSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or a clean skip when the folder is not beside the checkout."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} (put ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def phantom():
    return make_chest_phantom()


@pytest.fixture(scope="session")
def ctchest4_path() -> Path:
    slicerio = pytest.importorskip("slicerio")
    return Path(slicerio.get_testdata_file("CTChest4.nrrd"))


@pytest.fixture(scope="session")
def ctchest4_reference():
    """Right (1) / left (2) lung labels of CTChest4 from the segmentation slicerio ships."""
    slicerio = pytest.importorskip("slicerio")
    from lungseg_core.io import read_labelmap

    return read_labelmap(slicerio.get_testdata_file("Segmentation.seg.nrrd"), "lungs")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total
