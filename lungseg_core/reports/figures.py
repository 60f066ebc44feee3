"""The one-page case report picture (CASE.png) and an optional PDF with a table of all numbers.

Display conventions a radiologist expects, whatever the storage order of the input:

* every view is first brought to an LPS-aligned grid using the direction matrix (a transpose/flip for the
  usual axis-aligned scans, a SimpleITK resampling for oblique ones);
* axial slices are seen from the feet: patient right on the screen's left, anterior at the top;
* the coronal slice is seen from the front: patient right on the screen's left, head at the top;
* pixels are drawn in millimetres (extent from the spacing), so the aspect ratio is physical;
* lung window W1500/L-600 for HU images; 0-255 grey levels as they are for display-intensity images.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import numpy as np

from lungseg_core.io.atomic import atomic_path
from lungseg_core.io.volume import Volume
from lungseg_core.labels import segments_for

LUNG_WINDOW = (-600.0, 1500.0)  # level, width
LUNG_ALPHA, INFECTION_ALPHA = 0.35, 0.75
N_AXIAL = 4
BACKGROUND, FOREGROUND = "#101010", "#f0f0f0"
NOTE_COLOUR = "#ffb347"  # the case's notes ("look at the image"), under the picture
NOTE_CHARS_PER_LINE, NOTE_LINE_INCHES = 190, 0.2
PAGE_INCHES, MARGIN = (16.0, 10.5), 0.01


# --------------------------------------------------------------------------- orientation


def _axis_aligned_permutation(direction: np.ndarray, tol: float = 1e-3):
    """For each ijk axis, its LPS axis and sign, when the direction is a signed permutation; else None."""
    lps_axis = np.argmax(np.abs(direction), axis=0)
    if sorted(lps_axis.tolist()) != [0, 1, 2]:
        return None
    if not np.allclose(np.abs(direction[lps_axis, [0, 1, 2]]), 1.0, atol=tol):
        return None
    return lps_axis, np.sign(direction[lps_axis, [0, 1, 2]])


def to_lps_grid(ct: Volume, *labelmaps: np.ndarray | None) -> tuple[np.ndarray, list, tuple[float, float, float]]:
    """CT and labelmaps on an LPS-aligned grid: numpy axes (z: inferior->superior, y: anterior->posterior,
    x: patient right->left) and the grid's (x, y, z) spacing in mm."""
    permutation = _axis_aligned_permutation(ct.direction)
    if permutation is None:
        return _resample_to_lps(ct, labelmaps)
    lps_axis, sign = permutation
    # numpy axis of the output that shows LPS axis a is 2 - a; its source ijk axis i has lps_axis[i] == a.
    source_ijk = [int(np.nonzero(lps_axis == (2 - out_axis))[0][0]) for out_axis in range(3)]
    order = [2 - i for i in source_ijk]
    flips = [out_axis for out_axis, i in enumerate(source_ijk) if sign[i] < 0]

    def arrange(array: np.ndarray | None):
        if array is None:
            return None
        arranged = np.transpose(np.asarray(array), order)
        return np.flip(arranged, axis=flips) if flips else arranged

    spacing = tuple(float(ct.spacing[source_ijk[2 - a]]) for a in range(3))  # (x, y, z) of the new grid
    return arrange(ct.array), [arrange(m) for m in labelmaps], spacing


def _resample_to_lps(ct: Volume, labelmaps) -> tuple[np.ndarray, list, tuple[float, float, float]]:
    """Oblique input: resample onto an identity-direction grid covering the whole volume."""
    import SimpleITK as sitk

    corners = np.array([[i, j, k] for i in (0, ct.shape[2] - 1) for j in (0, ct.shape[1] - 1)
                        for k in (0, ct.shape[0] - 1)], dtype=float)
    lps = corners @ (ct.direction @ np.diag(ct.spacing)).T + np.asarray(ct.origin)
    spacing = float(min(ct.spacing[:2])), float(min(ct.spacing[:2])), float(ct.spacing[2])
    low, high = lps.min(axis=0), lps.max(axis=0)
    size = [int(np.ceil((h - l) / s)) + 1 for l, h, s in zip(low, high, spacing)]

    def resample(array, interpolator, default):
        image = ct.with_array(np.asarray(array)).to_sitk()
        out = sitk.Resample(image, size, sitk.Transform(), interpolator, tuple(low), spacing,
                            tuple(np.eye(3).flatten()), default, image.GetPixelID())
        return sitk.GetArrayFromImage(out)

    air = float(np.min(ct.array))
    ct_grid = resample(ct.array.astype(np.float32), sitk.sitkLinear, air)
    maps = [None if m is None else resample(np.asarray(m, np.uint8), sitk.sitkNearestNeighbor, 0) for m in labelmaps]
    return ct_grid, maps, spacing


# --------------------------------------------------------------------------- slices and overlays


def _window(ct_volume: Volume) -> tuple[float, float]:
    if ct_volume.intensity == "hu":
        level, width = LUNG_WINDOW
        return level - width / 2, level + width / 2
    return 0.0, 255.0


def choose_axial_slices(lungs: np.ndarray | None, infection: np.ndarray | None, depth: int, n: int = N_AXIAL) -> list[int]:
    """Axial indices (LPS-grid, superior first) spread over the lungs' head-foot extent.

    The slice with the most infection replaces the nearest pick, so the burden is always shown.
    """
    if depth <= n:
        return list(range(depth))[::-1]
    occupied = np.nonzero(lungs.reshape(depth, -1).any(axis=1))[0] if lungs is not None else np.array([])
    low, high = (occupied[0], occupied[-1]) if occupied.size else (0, depth - 1)
    picks = [int(round(low + f * (high - low))) for f in np.linspace(0.15, 0.85, n)]
    if infection is not None and np.any(infection):
        worst = int(np.argmax((infection > 0).reshape(depth, -1).sum(axis=1)))
        if worst not in picks:
            picks[int(np.argmin([abs(p - worst) for p in picks]))] = worst
    return sorted(set(picks), reverse=True)


def _coronal_index(lungs: np.ndarray | None, rows: int) -> int:
    if lungs is None or not np.any(lungs):
        return rows // 2
    return int(np.argmax((lungs > 0).sum(axis=(0, 2))))


def overlay_rgba(lungs: np.ndarray | None, infection: np.ndarray | None) -> np.ndarray:
    """RGBA image (float, 0-1) of a 2D slice's segments in the SEGMENTS colours; infection on top."""
    shape = (lungs if lungs is not None else infection).shape
    rgba = np.zeros(shape + (4,), dtype=float)
    for task, labels, alpha in (("lungs", lungs, LUNG_ALPHA), ("infection", infection, INFECTION_ALPHA)):
        if labels is None:
            continue
        for spec in segments_for(task):
            where = labels == spec.label
            rgba[where] = (*spec.color, alpha)
    return rgba


def _scale_bar_mm(width_mm: float) -> float:
    for length in (200, 100, 50, 20, 10, 5, 2, 1):
        if length <= 0.3 * width_mm:
            return float(length)
    return 1.0


def _outline():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.5, foreground="black")]


def _draw_view(ax, image, lungs2d, infection2d, pixel_mm, window, markers, title):
    """One slice in mm extent with overlay, orientation letters (left, right, top, bottom) and scale bar;
    ``markers`` None for an image file, which records neither orientation nor pixel size: no letters, no bar."""
    outline = _outline()  # black rim: markers stay readable on white body as well as on black air
    rows, cols = image.shape
    extent = (0, cols * pixel_mm[0], rows * pixel_mm[1], 0)
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], extent=extent, interpolation="nearest")
    if lungs2d is not None or infection2d is not None:
        ax.imshow(overlay_rgba(lungs2d, infection2d), extent=extent, interpolation="nearest")
    width, height = extent[1], extent[2]
    ax.set_title(title, color=FOREGROUND, fontsize=9)
    ax.set_axis_off()
    ax.set_aspect("equal")
    if markers is None:
        return
    style = dict(color="white", fontsize=12, fontweight="bold", ha="center", va="center", path_effects=outline)
    left, right, top, bottom = markers
    ax.text(0.035 * width, 0.5 * height, left, **style)
    ax.text(0.965 * width, 0.5 * height, right, **style)
    ax.text(0.5 * width, 0.05 * height, top, **style)
    ax.text(0.5 * width, 0.95 * height, bottom, **style)
    bar = _scale_bar_mm(width)
    x1, y = 0.95 * width, 0.88 * height
    ax.plot([x1 - bar, x1], [y, y], color="white", linewidth=3, solid_capstyle="butt", path_effects=outline)
    ax.text(x1 - bar / 2, y - 0.025 * height, f"{bar:g} mm", color="white", fontsize=8, ha="center", va="bottom",
            path_effects=outline)


# --------------------------------------------------------------------------- header, legend, table


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def key_numbers_line(measurements: dict) -> str:
    """One line of the numbers people look at first."""
    vol = measurements.get("volumes_ml") or {}
    inf = measurements.get("infection_percent") or {}
    ggo = measurements.get("ggo_percent") or {}
    con = measurements.get("consolidation_percent") or {}
    zones = measurements.get("zones") or {}
    parts = [
        f"Right lung {_fmt(vol.get('right_lung'), ' mL', 0)}",
        f"Left lung {_fmt(vol.get('left_lung'), ' mL', 0)}",
        f"Infection {_fmt(inf.get('both_lungs'), ' %')} (R {_fmt(inf.get('right_lung'), ' %')}, "
        f"L {_fmt(inf.get('left_lung'), ' %')}), {_fmt(vol.get('infection'), ' mL')}",
        f"GGO {_fmt(ggo.get('both_lungs'), ' %')}",
        f"Consolidation {_fmt(con.get('both_lungs'), ' %')}",
    ]
    if zones.get("severity_total") is not None:
        parts.append(f"Zone severity {zones['severity_total']}/{zones.get('severity_max', 24)}")
    return "   |   ".join(parts)


def _legend(ax, lungs, infection) -> None:
    from matplotlib.patches import Patch

    handles = []
    for task, labels in (("lungs", lungs), ("infection", infection)):
        if labels is None:
            continue
        # one comparison per segment instead of np.unique's hash of the whole volume
        handles += [Patch(facecolor=s.color, edgecolor="none", label=s.name) for s in segments_for(task)
                    if np.any(labels == s.label)]
    if handles:
        legend = ax.legend(handles=handles, loc="upper left", frameon=False, fontsize=10, labelcolor=FOREGROUND,
                           handlelength=2.5, handleheight=1.5)
        legend.set_title("Segments", prop={"size": 10})
        legend.get_title().set_color(FOREGROUND)


def zone_table_rows(measurements: dict) -> list[list[str]]:
    zones = measurements.get("zones") or {}
    rows = []
    for zone in ("upper", "middle", "lower", "ventral", "dorsal"):
        row = [zone]
        for lung in ("right_lung", "left_lung"):
            entry = (zones.get(lung) or {}).get(zone) or {}
            score = entry.get("severity")
            row.append(f"{_fmt(entry.get('percent'), '%')} ({score})" if score is not None else _fmt(entry.get("volume_ml"), " mL", 0))
        rows.append(row)
    return rows


def _zone_table(ax, measurements) -> None:
    if not measurements.get("zones"):
        return
    table = ax.table(cellText=zone_table_rows(measurements), colLabels=["zone", "right: % (score)", "left: % (score)"],
                     loc="lower left", cellLoc="center", bbox=[0.0, 0.0, 1.0, 0.5])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for cell in table.get_celld().values():
        cell.set_facecolor(BACKGROUND)
        cell.set_edgecolor("#555555")
        cell.get_text().set_color(FOREGROUND)


def note_lines(measurements: dict) -> list[str]:
    """The case's notes (why a number needs a look) wrapped to the page width, each starting with "Note:"."""
    lines: list[str] = []
    for note in measurements.get("notes") or []:
        lines += textwrap.wrap(f"Note: {note}", NOTE_CHARS_PER_LINE, subsequent_indent="      ")
    return lines


# --------------------------------------------------------------------------- the figure


def build_case_figure(ct: Volume, lungs, infection, measurements: dict, title: str | None = None):
    """The report as a matplotlib Figure (Agg); the caller saves and closes it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    lungs = None if lungs is None else np.asarray(getattr(lungs, "array", lungs))
    infection = None if infection is None else np.asarray(getattr(infection, "array", infection))
    grid, (lung_grid, inf_grid), (sx, sy, sz) = to_lps_grid(ct, lungs, infection)
    window = _window(ct)
    notes = note_lines(measurements)
    # the page grows by the notes' lines, so that the views keep their size and place
    notes_inches = NOTE_LINE_INCHES * (len(notes) + 0.5) if notes else 0.0
    width, height = PAGE_INCHES[0], PAGE_INCHES[1] + notes_inches
    margin_inches = MARGIN * PAGE_INCHES[1]
    fig = Figure(figsize=(width, height), dpi=100, facecolor=BACKGROUND)
    layout = fig.add_gridspec(3, N_AXIAL, height_ratios=[0.13, 1, 1.15], hspace=0.12, wspace=0.04, left=MARGIN,
                              right=1 - MARGIN, top=1 - margin_inches / height,
                              bottom=(margin_inches + notes_inches) / height)
    if notes:
        fig.text(MARGIN, notes_inches / height, "\n".join(notes), color=NOTE_COLOUR, fontsize=10, va="top",
                 linespacing=1.4)
    header = fig.add_subplot(layout[0, :])
    header.set_axis_off()
    header.text(0.0, 0.72, title or ct.name, color=FOREGROUND, fontsize=18, fontweight="bold", va="center")
    header.text(0.0, 0.15, key_numbers_line(measurements), color=FOREGROUND, fontsize=11.5, va="center")

    picks = choose_axial_slices(lung_grid, inf_grid, grid.shape[0])
    # an image file records neither orientation nor pixel size (COVID-SemiSeg's are even stored transposed)
    known = ct.spacing_known

    for column, k in enumerate(picks):
        ax = fig.add_subplot(layout[1, column])
        _draw_view(ax, grid[k], None if lung_grid is None else lung_grid[k], None if inf_grid is None else inf_grid[k],
                   (sx, sy), window, ("R", "L", "A", "P") if known else None,
                   f"axial, {k + 1} of {grid.shape[0]} from the feet" if known else "image as stored (no orientation)")

    if grid.shape[0] > 1:
        j = _coronal_index(lung_grid, grid.shape[1])
        coronal = fig.add_subplot(layout[2, :2])
        flip = (slice(None, None, -1), j, slice(None))  # superior row first: head at the top
        _draw_view(coronal, grid[flip], None if lung_grid is None else lung_grid[flip],
                   None if inf_grid is None else inf_grid[flip], (sx, sz), window, ("R", "L", "S", "I"),
                   "coronal (seen from the front)")
        panel = fig.add_subplot(layout[2, 2])
        panel.set_axis_off()
        with tempfile.TemporaryDirectory() as tmp:
            from lungseg_core.reports.render3d import offscreen_rendering_status, render_surfaces_png

            rendered = render_surfaces_png(ct, lungs, infection, Path(tmp) / "surfaces.png", size=(520, 560))
            if rendered is not None:
                panel.imshow(imread(rendered))
                style = dict(color="white", fontsize=12, fontweight="bold", transform=panel.transAxes)
                panel.text(0.03, 0.5, "R", ha="left", **style)
                panel.text(0.97, 0.5, "L", ha="right", **style)
                panel.set_title("3D, anterior view", color=FOREGROUND, fontsize=9)
            else:
                panel.text(0.5, 0.5, "3D view not available\n" + offscreen_rendering_status()[1][:80],
                           color=FOREGROUND, ha="center", va="center", fontsize=8, wrap=True, transform=panel.transAxes)
    info = fig.add_subplot(layout[2, 3])
    info.set_axis_off()
    _legend(info, lungs, infection)
    _zone_table(info, measurements)
    if ct.intensity != "hu":
        info.text(0.0, 0.55, "display-intensity input (not HU)", color=FOREGROUND, fontsize=9, transform=info.transAxes)
    return fig


def render_case_report(ct: Volume, lungs, infection, measurements: dict, path, title: str | None = None) -> Path:
    """Write the CASE.png report (header, axial row, coronal, 3D panel, legend, zone table) atomically."""
    fig = build_case_figure(ct, lungs, infection, measurements, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return Path(path)


def _flatten(prefix: str, value, rows: list) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        rows.append([prefix, f"{value:.3f}" if isinstance(value, float) else str(value)])
    elif value is None:
        rows.append([prefix, "n/a"])


def measurement_rows(measurements: dict) -> list[list[str]]:
    """Every number as (dotted.name, value) rows, for the PDF table."""
    rows: list = []
    for key, value in measurements.items():
        if key not in ("schema_version", "notes", "definition"):
            _flatten(key, value, rows)
    return rows


def render_case_pdf(ct: Volume, lungs, infection, measurements: dict, path, title: str | None = None) -> Path:
    """CASE.pdf: the report page followed by table pages holding every number of ``measurements``."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    fig = build_case_figure(ct, lungs, infection, measurements, title)
    rows = measurement_rows(measurements)
    per_page = 48
    with atomic_path(path) as tmp:
        with PdfPages(tmp) as pdf:
            pdf.savefig(fig, facecolor=fig.get_facecolor())
            for start in range(0, len(rows), per_page):
                page = Figure(figsize=(8.27, 11.69))
                ax = page.add_subplot(111)
                ax.set_axis_off()
                ax.set_title(f"{title or ct.name}: measurements ({measurements.get('intensity_units', '')})", fontsize=10)
                table = ax.table(cellText=rows[start:start + per_page], colLabels=["measurement", "value"],
                                 loc="upper center", cellLoc="left", colWidths=[0.75, 0.25])
                table.auto_set_font_size(False)
                table.set_fontsize(7)
                pdf.savefig(page)
    return Path(path)
