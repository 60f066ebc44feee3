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


def test_a_mask_is_never_taken_from_another_folder(tmp_path):
    """The CT and the masks of COVID-19-CT-Seg share file names: only the listed folder can hold a mask."""
    for folder in ("ct_scans", "infection_mask"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.nii").write_text(folder)
    (tmp_path / "a.nii").write_text("top")
    with pytest.raises(InputError, match="'lung_mask/a.nii' listed in metadata.csv is not below"):
        _find_file(tmp_path, "../input/lung_mask/a.nii")


def test_a_folder_in_another_letter_case_is_used_only_when_unambiguous_and_noted(tmp_path):
    (tmp_path / "Lung_Mask").mkdir()
    (tmp_path / "Lung_Mask" / "a.nii").write_text("mask")
    notes: set[str] = set()
    assert _find_file(tmp_path, "lung_mask/a.nii", notes) == tmp_path / "Lung_Mask" / "a.nii"
    assert notes == {"metadata folder 'lung_mask/' read as 'Lung_Mask/' (letter case differs)"}
    (tmp_path / "old" / "LUNG_MASK").mkdir(parents=True)
    (tmp_path / "old" / "LUNG_MASK" / "a.nii").write_text("another")
    with pytest.raises(InputError, match="could be any of"):
        _find_file(tmp_path, "lung_mask/a.nii")


def test_a_ct_may_lie_in_another_folder_but_never_in_a_mask_folder(tmp_path):
    for folder in ("Lung_Mask", "CTs"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.nii").write_text(folder)
    assert _find_file(tmp_path, "ct_scans/a.nii", set(), image_outside={"lung_mask"}) == tmp_path / "CTs" / "a.nii"
    (tmp_path / "CTs" / "a.nii").unlink()
    with pytest.raises(InputError, match="not below"):
        _find_file(tmp_path, "ct_scans/a.nii", set(), image_outside={"lung_mask"})
