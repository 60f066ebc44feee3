"""Box plots of Dice and HD95 per task and label, drawn off-screen (Agg) for headless machines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _groups(rows: list[dict], column: str) -> tuple[list[str], list[list[float]]]:
    """Finite values of ``column`` per (task, label), in first-seen order."""
    values: dict[str, list[float]] = {}
    for row in rows:
        name = f"{row['task']}: {row['label_name']}"
        value = float(row[column])
        values.setdefault(name, [])
        if not math.isnan(value):
            values[name].append(value)
    return list(values), list(values.values())


def _box(axes, rows: list[dict], column: str, title: str, ylabel: str) -> None:
    names, values = _groups(rows, column)
    drawn = [(n, v) for n, v in zip(names, values) if v]
    if not drawn:
        axes.text(0.5, 0.5, "no values", ha="center", va="center", transform=axes.transAxes)
    else:
        axes.boxplot([v for _, v in drawn], showmeans=True)
        axes.set_xticks(range(1, len(drawn) + 1), [f"{n}\n(n={len(v)})" for n, v in drawn], rotation=30, ha="right")
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)


def boxplot_figure(rows: list[dict]) -> Figure:
    """Dice (left) and HD95 (right) boxes, one per task and label; NaN distances are left out."""
    figure = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    dice_axes, hd_axes = figure.subplots(1, 2)
    _box(dice_axes, rows, "dice", "Dice per label", "Dice")
    dice_axes.set_ylim(-0.02, 1.02)
    _box(hd_axes, rows, "hd95_mm", "HD95 per label", "HD95 (mm; pixels for 2D masks)")
    return figure


def save_boxplot(rows: list[dict], path: str | Path) -> Path:
    boxplot_figure(rows).savefig(str(path), format="png")
    return Path(path)


def worst_slice(ref: np.ndarray, pred: np.ndarray) -> int:
    """Index (z) of the slice where prediction and reference disagree most."""
    disagreement = np.logical_xor(ref > 0, pred > 0).reshape(ref.shape[0], -1).sum(axis=1)
    return int(np.argmax(disagreement))


def error_map_rgb(ref_slice: np.ndarray, pred_slice: np.ndarray) -> np.ndarray:
    """Agreement grey, missed (reference only) blue, extra (prediction only) red, background black."""
    ref_on, pred_on = ref_slice > 0, pred_slice > 0
    rgb = np.zeros(ref_slice.shape + (3,), dtype=np.float32)
    rgb[ref_on & pred_on] = (0.75, 0.75, 0.75)
    rgb[ref_on & ~pred_on] = (0.15, 0.45, 1.0)
    rgb[~ref_on & pred_on] = (1.0, 0.2, 0.2)
    return rgb


def save_error_overlay(ref: np.ndarray, pred: np.ndarray, aspect: float, title: str, path: str | Path) -> Path:
    """One-slice error map of a case (reference vs prediction) for reviewing the worst results."""
    z = worst_slice(ref, pred)
    fig = Figure(figsize=(6, 6.4))
    FigureCanvasAgg(fig)
    axes = fig.add_subplot(1, 1, 1)
    axes.imshow(error_map_rgb(ref[z], pred[z]), aspect=aspect, interpolation="nearest")
    axes.set_title(f"{title}\nslice {z}: grey agree, blue missed, red extra", fontsize=9)
    axes.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return Path(path)
