"""Paths in a dataset's metadata.csv can only name files below the dataset root."""

from __future__ import annotations

import pytest

from lungseg_core.errors import InputError
from lungseg_core.training.datasets import _find_file, _parts_inside_root


@pytest.mark.parametrize("name, parts", [
    ("../input/covid19-ct-scans/ct_scans/a.nii", ("input", "covid19-ct-scans", "ct_scans", "a.nii")),
    ("/kaggle/input/ct_scans/a.nii", ("kaggle", "input", "ct_scans", "a.nii")),
    ("C:\\data\\ct_scans\\a.nii", ("data", "ct_scans", "a.nii")),
    ("ct_scans/../../../etc/passwd", ("etc", "passwd")),
    ("./ct_scans/a.nii", ("ct_scans", "a.nii")),
])
def test_anchors_and_parent_steps_are_dropped(name, parts):
    assert _parts_inside_root(name) == parts


def test_a_file_outside_the_root_is_never_returned(tmp_path):
    root = tmp_path / "dataset"
    (root / "ct_scans").mkdir(parents=True)
    (root / "ct_scans" / "a.nii").write_text("inside")
    (tmp_path / "secret.nii").write_text("outside")
    assert _find_file(root, "/somewhere/else/ct_scans/a.nii") == root / "ct_scans" / "a.nii"
    for escaping in ("../secret.nii", str(tmp_path / "secret.nii"), "ct_scans/../../secret.nii"):
        with pytest.raises(InputError, match="not below"):
            _find_file(root, escaping)
    with pytest.raises(InputError, match="names no file"):
        _find_file(root, "..")
