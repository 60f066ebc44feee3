"""Offscreen VTK rendering: anatomically oriented (anterior view, head up), skipped without OpenGL."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.reports import render3d
from lungseg_core.synthetic import make_chest_phantom


@pytest.fixture(scope="module")
def small_phantom():
    return make_chest_phantom(shape=(32, 48, 48), spacing=(7.0, 7.0, 9.0), noise_hu=0)


def _need_opengl():
    available, message = render3d.offscreen_rendering_status()
    if not available:
        pytest.skip(message)


def _centroid(rgb: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    assert rows.size > 20, "colour not found in the rendering"
    return rows.mean() / rgb.shape[0], cols.mean() / rgb.shape[1]


def _red(rgb):  # consolidation (0.86, 0.08, 0.24), shaded
    return (rgb[..., 0] > 120) & (rgb[..., 1] < 60) & (rgb[..., 2] < 90) & (rgb[..., 0] > 2 * rgb[..., 2])


def _yellow(rgb):  # ground-glass (1.0, 0.84, 0.0), shaded
    return (rgb[..., 0] > 120) & (rgb[..., 1] > 100) & (rgb[..., 2] < 60)


@pytest.mark.parametrize("flips", [(False, False, False), (True, True, False), (True, False, True)],
                         ids=["lps", "ras", "flip_xz"])
def test_rendering_shows_patient_right_on_screen_left_and_head_up(small_phantom, tmp_path, flips):
    _need_opengl()
    from PIL import Image

    case = small_phantom.reoriented(flips)
    path = render3d.render_surfaces_png(case.ct, case.lungs, case.infection, tmp_path / "3d.png", size=(300, 320))
    assert path is not None and path.exists()
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert rgb.shape == (320, 300, 3)
    # The phantom's consolidation is in the right lung, the GGO in the left lung and higher (toward the head).
    red_row, red_col = _centroid(rgb, _red(rgb))
    yellow_row, yellow_col = _centroid(rgb, _yellow(rgb))
    assert red_col < 0.5 < yellow_col
    assert yellow_row < red_row


def test_nothing_to_render_returns_none(small_phantom, tmp_path):
    _need_opengl()
    empty = np.zeros_like(small_phantom.lungs)
    assert render3d.render_surfaces_png(small_phantom.ct, empty, None, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_without_opengl_returns_none_and_logs(small_phantom, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(render3d, "offscreen_rendering_status", lambda: (False, "no offscreen OpenGL (test)"))
    result = render3d.render_surfaces_png(small_phantom.ct, small_phantom.lungs, None, tmp_path / "x.png")
    assert result is None and not (tmp_path / "x.png").exists()
    assert "no offscreen OpenGL (test)" in caplog.text
