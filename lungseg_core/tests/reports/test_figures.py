"""Case report picture: radiological orientation, physical aspect, overlay colours, PNG/PDF files."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.io.volume import Volume
from lungseg_core.labels import segment_by_name
from lungseg_core.reports import figures, render3d
from lungseg_core.reports.quantify import quantify
from lungseg_core.synthetic import make_chest_phantom

ALL_FLIPS = [(fx, fy, fz) for fx in (False, True) for fy in (False, True) for fz in (False, True)]


@pytest.fixture(scope="module")
def small_phantom():
    return make_chest_phantom(shape=(24, 40, 48), spacing=(7.0, 8.0, 10.0), noise_hu=0)


@pytest.fixture
def no_3d(monkeypatch):
    """Most picture tests do not need the (slow) VTK panel; it is tested in test_render3d."""
    monkeypatch.setattr(render3d, "render_surfaces_png", lambda *a, **k: None)


def _colour_present(rgb: np.ndarray, colour, tol: int = 3) -> bool:
    target = np.round(np.array(colour) * 255).astype(int)
    return bool(np.any(np.all(np.abs(rgb[..., :3].astype(int) - target) <= tol, axis=-1)))


@pytest.mark.parametrize("flips", ALL_FLIPS)
def test_lps_grid_is_the_same_for_every_storage_flip(small_phantom, flips):
    reference_ct, (reference_lungs,), reference_spacing = figures.to_lps_grid(small_phantom.ct, small_phantom.lungs)
    case = small_phantom.reoriented(flips)
    ct, (lungs,), spacing = figures.to_lps_grid(case.ct, case.lungs)
    np.testing.assert_array_equal(ct, reference_ct)
    np.testing.assert_array_equal(lungs, reference_lungs)
    assert spacing == reference_spacing == (7.0, 8.0, 10.0)


def test_lps_grid_puts_patient_right_in_low_columns_and_head_in_high_slices(small_phantom):
    # Store the phantom with x and z exchanged and x reversed: nothing in the array order is LPS any more.
    case = small_phantom.reoriented((True, False, False))
    ct = case.ct
    swapped = Volume(np.transpose(ct.array, (2, 1, 0)), ct.spacing[::-1], ct.origin, ct.direction[:, [2, 1, 0]])
    _, (lungs,), spacing = figures.to_lps_grid(swapped, np.transpose(case.lungs, (2, 1, 0)))
    assert spacing == (7.0, 8.0, 10.0)
    right_cols = np.nonzero(lungs == 1)[2].mean()
    left_cols = np.nonzero(lungs == 2)[2].mean()
    assert right_cols < left_cols  # axial/coronal column 0 is shown at the screen's left
    # the phantom's lungs are centred above the middle (towards the head): high z-index in the LPS grid
    assert np.nonzero(lungs)[0].mean() > lungs.shape[0] / 2


def test_oblique_input_is_resampled_with_sides_kept(small_phantom):
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    ct = Volume(small_phantom.ct.array, small_phantom.ct.spacing, (0, 0, 0), rotation)
    grid, (lungs,), spacing = figures.to_lps_grid(ct, small_phantom.lungs)
    assert grid.shape == lungs.shape
    assert np.nonzero(lungs == 1)[2].mean() < np.nonzero(lungs == 2)[2].mean()
    # nearest-neighbour resampling keeps the lung volume within a few percent
    ratio = np.count_nonzero(lungs) * np.prod(spacing) / (np.count_nonzero(small_phantom.lungs) * np.prod(ct.spacing))
    assert ratio == pytest.approx(1.0, rel=0.05)


def test_axial_slices_cover_lungs_and_include_the_worst_infection_slice():
    lungs = np.zeros((100, 4, 4), np.uint8)
    lungs[20:81] = 1
    infection = np.zeros_like(lungs)
    infection[77] = 1
    picks = figures.choose_axial_slices(lungs, infection, 100)
    assert picks == sorted(picks, reverse=True)  # superior first
    assert 77 in picks and all(20 <= k <= 80 for k in picks) and len(picks) == 4


def test_report_png_has_overlay_colours_size_and_no_temp_files(small_phantom, tmp_path, no_3d):
    from PIL import Image

    m = quantify(small_phantom.ct, small_phantom.lungs, small_phantom.infection)
    path = figures.render_case_report(small_phantom.ct, small_phantom.lungs, small_phantom.infection, m,
                                      tmp_path / "CASE.png", title="phantom case")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert rgb.shape == (1050, 1600, 3)
    for name in ("Right lung", "Left lung", "Ground-glass opacity", "Consolidation"):
        assert _colour_present(rgb, segment_by_name(name).color), name
    assert [p.name for p in tmp_path.iterdir()] == ["CASE.png"]


def test_report_shows_the_case_notes_under_the_views(small_phantom, tmp_path, no_3d):
    """A note asks the reader to look at the image: the picture, which is what a reader opens, must show it."""
    from PIL import Image

    m = quantify(small_phantom.ct, small_phantom.lungs, small_phantom.infection)
    m["notes"] = ["823 mL of dense tissue beside the lungs looked like lung to the network but was left out, because "
                  "lung lies beyond it: consolidation against the mediastinum or the diaphragm (then missing from the "
                  "lungs and the infection), or the heart or liver on thick slices; look at the image", "second note"]
    lines = figures.note_lines(m)
    assert len(lines) == 3 and lines[0].startswith("Note: 823 mL") and lines[2] == "Note: second note"
    path = figures.render_case_report(small_phantom.ct, small_phantom.lungs, small_phantom.infection, m,
                                      tmp_path / "CASE.png")
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert rgb.shape == (1050 + round(100 * figures.NOTE_LINE_INCHES * 3.5), 1600, 3)
    note_colour = np.array([int(figures.NOTE_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])
    assert np.all(np.abs(rgb[1050:].astype(int) - note_colour) <= 10, axis=-1).any()  # under the views
    m["notes"] = []
    plain = figures.render_case_report(small_phantom.ct, small_phantom.lungs, small_phantom.infection, m,
                                       tmp_path / "plain.png")
    assert np.asarray(Image.open(plain).convert("RGB")).shape == (1050, 1600, 3)
    assert np.array_equal(np.asarray(Image.open(plain).convert("RGB")), rgb[:1050])  # the views did not move


def test_report_without_infection_has_no_infection_colours(small_phantom, tmp_path, no_3d):
    from PIL import Image

    m = quantify(small_phantom.ct, small_phantom.lungs, None)
    path = figures.render_case_report(small_phantom.ct, small_phantom.lungs, None, m, tmp_path / "CASE.png")
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert _colour_present(rgb, segment_by_name("Right lung").color)
    assert not _colour_present(rgb, segment_by_name("Ground-glass opacity").color)
    assert not _colour_present(rgb, segment_by_name("Consolidation").color)


def test_axial_panel_shows_patient_right_on_screen_left(small_phantom, tmp_path, no_3d):
    """In the first axial panel, right-lung colour is left of left-lung colour, for RAS storage too."""
    from PIL import Image

    case = small_phantom.reoriented((True, True, False))  # RAS
    m = quantify(case.ct, case.lungs, None)
    path = figures.render_case_report(case.ct, case.lungs, None, m, tmp_path / "CASE.png")
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    panel = rgb[120:500, :400]  # first axial view
    low, high = figures._window(case.ct)
    grey = (-860 - low) / (high - low)  # the phantom's (noise-free) lung HU in the lung window

    def columns(colour):
        blended = 255 * (figures.LUNG_ALPHA * np.array(colour) + (1 - figures.LUNG_ALPHA) * grey)
        return np.nonzero(np.all(np.abs(panel - blended) <= 4, axis=-1))[1]

    right, left = columns(segment_by_name("Right lung").color), columns(segment_by_name("Left lung").color)
    assert right.size > 50 and left.size > 50
    assert right.mean() < left.mean()


def test_pdf_has_report_page_and_table_pages(small_phantom, tmp_path, no_3d):
    m = quantify(small_phantom.ct, small_phantom.lungs, small_phantom.infection)
    path = figures.render_case_pdf(small_phantom.ct, small_phantom.lungs, small_phantom.infection, m,
                                   tmp_path / "CASE.pdf")
    data = path.read_bytes()
    assert data[:5] == b"%PDF-"
    assert data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") + data.count(b"/Type /Page>") >= 2 \
        or data.count(b"/Page") >= 3
    assert ["volumes_ml.right_lung", f"{m['volumes_ml']['right_lung']:.3f}"] in figures.measurement_rows(m)


def test_2d_display_slice_report(tmp_path, no_3d):
    array = np.full((1, 60, 80), 200, np.uint8)
    lungs = np.zeros(array.shape, np.uint8)
    lungs[0, 10:50, 8:35], lungs[0, 10:50, 45:72] = 1, 2
    volume = Volume(array, intensity="display", is_2d=True, name="slice")
    m = quantify(volume, lungs, None)
    path = figures.render_case_report(volume, lungs, None, m, tmp_path / "slice.png")
    assert path.exists() and path.stat().st_size > 10_000


def test_real_ctchest4_report(ctchest4_path, ctchest4_reference, tmp_path):
    """The real CT with its shipped lung labels (3D panel included when OpenGL is available)."""
    from PIL import Image

    from lungseg_core.io import read_volume

    ct = read_volume(ctchest4_path)
    lungs = ctchest4_reference.array
    m = quantify(ct, lungs, None)
    assert 2000 < m["volumes_ml"]["right_lung"] < 4500 and 2000 < m["volumes_ml"]["left_lung"] < 4500
    path = figures.render_case_report(ct, lungs, None, m, tmp_path / "CTChest4.png")
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert rgb.shape == (1050, 1600, 3)
    assert _colour_present(rgb, segment_by_name("Left lung").color)
    _, (grid_lungs,), _ = figures.to_lps_grid(ct, lungs)
    assert np.nonzero(grid_lungs == 1)[2].mean() < np.nonzero(grid_lungs == 2)[2].mean()


@pytest.mark.parametrize("spacing_known", [True, False])
def test_image_file_without_geometry_gets_no_orientation_letters_or_scale_bar(spacing_known, no_3d):
    """A PNG/JPG records neither orientation nor pixel size (some collections store slices transposed):
    R/L/A/P letters and a mm scale bar would be guesses, and could contradict the lung labels."""
    array = np.full((1, 60, 80), 200, np.uint8)
    lungs = np.zeros(array.shape, np.uint8)
    lungs[0, 10:50, 8:35], lungs[0, 10:50, 45:72] = 1, 2
    volume = Volume(array, intensity="display", is_2d=True, name="slice")
    volume.metadata["spacing_known"] = spacing_known
    fig = figures.build_case_figure(volume, lungs, None, quantify(volume, lungs, None))
    axial = fig.axes[1]  # the header comes first
    shown = {text.get_text() for text in axial.texts}
    assert ({"R", "L", "A", "P"} <= shown) is spacing_known
    assert any(t.endswith(" mm") for t in shown) is spacing_known
    assert ("orientation" in axial.get_title()) is not spacing_known
