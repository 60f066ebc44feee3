"""Outputs keep the input geometry exactly and appear atomically."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io import AtomicGroup, read_labelmap, read_volume, write_labelmap, write_segmentation
from lungseg_core.labels import SEGMENTS
from lungseg_core.synthetic import flip_axes


def test_labelmap_keeps_geometry_in_any_orientation(tmp_path, phantom):
    ras = flip_axes(phantom.ct, (True, True, False))
    lungs = phantom.reoriented((True, True, False)).lungs
    path = write_labelmap(tmp_path / "x_lungs.nii.gz", ras, lungs)
    back = read_volume(path)
    assert back.same_geometry(ras)
    np.testing.assert_array_equal(back.array, lungs)
    assert back.array.dtype == np.uint8


def test_seg_nrrd_has_named_coloured_segments_with_terminology(tmp_path, phantom):
    import slicerio

    path = write_segmentation(tmp_path / "x.seg.nrrd", phantom.ct, {"lungs": phantom.lungs, "infection": phantom.infection})
    seg = slicerio.read_segmentation(str(path))
    names = [s["name"] for s in seg["segments"]]
    assert names == [s.name for s in SEGMENTS]
    for written, spec in zip(seg["segments"], SEGMENTS):
        assert np.allclose(written["color"], spec.color, atol=1e-3)
        assert written["terminology"]["type"] == spec.terminology["type"]
    np.testing.assert_allclose(np.asarray(seg["ijkToLPS"]), phantom.ct.ijk_to_lps(), atol=1e-4)
    # overlapping infection and lungs are both intact (separate layers)
    back_lungs = read_labelmap(path, "lungs").array
    back_infection = read_labelmap(path, "infection").array
    np.testing.assert_array_equal(back_lungs, phantom.lungs)
    np.testing.assert_array_equal(back_infection, phantom.infection)


def test_atomic_group_leaves_nothing_on_error(tmp_path, phantom):
    (tmp_path / "keep.json").write_text("old")
    with pytest.raises(RuntimeError):
        with AtomicGroup() as group:
            write_labelmap(group.path(tmp_path / "a_lungs.nii.gz"), phantom.ct, phantom.lungs)
            group.path(tmp_path / "keep.json").write_text("new")
            raise RuntimeError("crash mid-case")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json"]
    assert (tmp_path / "keep.json").read_text() == "old"


def test_atomic_outputs_get_the_users_normal_file_mode(tmp_path):
    import os
    import stat

    from lungseg_core.io.atomic import write_text_atomic

    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "result.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600: colleagues must read results


def test_seg_nrrd_single_layer_round_trip(tmp_path, phantom):
    """One task gives a 3D (not 4D) segmentation whose voxels read back unchanged."""
    import slicerio

    path = write_segmentation(tmp_path / "x.seg.nrrd", phantom.ct, {"lungs": phantom.lungs})
    assert np.asarray(slicerio.read_segmentation(str(path))["voxels"]).ndim == 3
    np.testing.assert_array_equal(read_labelmap(path, "lungs").array, phantom.lungs)
