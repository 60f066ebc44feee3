"""Fuzzing the readers: whatever bytes or values a file holds, read_volume returns a Volume or raises
InputError (one line, naming the problem and the fix); never another exception, never a huge allocation."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lungseg_core.errors import InputError
from lungseg_core.io import read_volume
from lungseg_core.io.volume import Volume

# Derandomized, without an example database: every run checks the same examples (a CI failure reproduces
# locally) and nothing is written into the checkout. Raise max_examples locally to search further.
FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = [".nii", ".nii.gz", ".nrrd", ".mha", ".png"]


@pytest.fixture(autouse=True)
def small_memory_limit(monkeypatch):
    """A mutated header may declare billions of voxels: the size check must refuse them before allocating."""
    monkeypatch.setenv("LUNGSEG_MAX_MEMORY_GB", "0.25")


def read_or_input_error(path: Path) -> Volume | None:
    try:
        volume = read_volume(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc).endswith(".")
        return None
    assert isinstance(volume, Volume) and volume.array.ndim == 3 and volume.array.size > 0
    return volume


def valid_file(folder: Path, suffix: str) -> Path:
    path = folder / f"valid{suffix}"
    if suffix == ".png":
        from PIL import Image

        Image.fromarray((np.arange(16 * 16).reshape(16, 16) % 256).astype(np.uint8)).save(path)
    else:
        array = np.linspace(-1000, 200, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8).astype(np.int16)
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=2048))
def test_random_bytes(suffix, data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"random{suffix}"
        path.write_bytes(data)
        read_or_input_error(path)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), cut=st.floats(0.0, 1.0),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)), max_size=8))
def test_mutated_and_truncated_valid_files(suffix, cut, flips):
    with tempfile.TemporaryDirectory() as folder:
        path = valid_file(Path(folder), suffix)
        data = bytearray(path.read_bytes())
        for where, xor in flips:  # flip bits anywhere, headers included
            data[int(where * len(data))] ^= xor
        path.write_bytes(bytes(data[: max(1, int(cut * len(data)))] if cut < 1.0 else data))
        read_or_input_error(path)


@FUZZ
@given(array=hnp.arrays(dtype=st.sampled_from([np.uint8, np.int16, np.float32, np.float64]),
                        shape=hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6)),
       suffix=st.sampled_from([".nii.gz", ".nrrd"]))
def test_random_small_arrays_round_trip_or_are_refused(array, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"values{suffix}"
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        volume = read_or_input_error(path)
        finite = not np.issubdtype(array.dtype, np.floating) or np.isfinite(array).all()
        assert (volume is not None) == finite  # NaN and infinity are the only values refused on reading
        if volume is not None:
            np.testing.assert_array_equal(volume.array, array)
