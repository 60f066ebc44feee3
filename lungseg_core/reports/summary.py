"""Batch summary of many cases: OUTDIR/summary.csv (one row per case) and OUTDIR/summary.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.io.atomic import atomic_path, write_text_atomic
from lungseg_core.io.tables import rows_to_csv_text
from lungseg_core.reports.quantify import LUNG_KEYS

LUNGS = LUNG_KEYS
SUMMARY_COLUMNS = (
    ["case"]
    + [f"{lung}_ml" for lung in LUNGS]
    + ["ggo_ml", "consolidation_ml", "infection_ml"]
    + [f"infection_percent_{lung}" for lung in LUNGS]
    + [f"ggo_percent_{lung}" for lung in LUNGS]
    + [f"consolidation_percent_{lung}" for lung in LUNGS]
    + ["severity_total", "notes"]
)


def summary_row(case_json: dict) -> dict:
    """The flat summary row of one CASE.json document (missing numbers become None)."""
    m = case_json.get("measurements") or {}
    volumes = m.get("volumes_ml") or {}
    row: dict = {"case": case_json.get("case", "?")}
    for lung in LUNGS:
        row[f"{lung}_ml"] = volumes.get(lung)
    for name in ("ggo", "consolidation", "infection"):
        row[f"{name}_ml"] = volumes.get(name)
    for key in ("infection_percent", "ggo_percent", "consolidation_percent"):
        for lung in LUNGS:
            row[f"{key}_{lung}"] = (m.get(key) or {}).get(lung)
    row["severity_total"] = (m.get("zones") or {}).get("severity_total")
    row["notes"] = "; ".join(m.get("notes") or [])  # e.g. "no lung found": visible without opening CASE.json
    return row


def _csv_text(rows: list[dict]) -> str:
    return rows_to_csv_text(rows, SUMMARY_COLUMNS)


def _distribution(ax, rows: list[dict], columns: list[str], labels: list[str], ylabel: str) -> None:
    """Box plot per column with every case as a dot (a batch may be 2 cases or 2000)."""
    data = [np.array([r[c] for r in rows if r[c] is not None], dtype=float) for c in columns]
    positions = [i + 1 for i, d in enumerate(data) if d.size]
    if positions:
        ax.boxplot([d for d in data if d.size], positions=positions, widths=0.5, showfliers=False)
    jitter = np.random.default_rng(0)
    for i, values in enumerate(data):
        ax.scatter(i + 1 + jitter.uniform(-0.12, 0.12, values.size), values, s=14, alpha=0.7, zorder=3)
    ax.set_xticks(range(1, len(columns) + 1), labels)
    ax.set_xlim(0.4, len(columns) + 0.6)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def _summary_figure(rows: list[dict]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), dpi=100)
    volume_ax, percent_ax = fig.subplots(1, 2)
    names = ["right lung", "left lung", "both lungs"]
    _distribution(volume_ax, rows, [f"{lung}_ml" for lung in LUNGS], names, "volume (mL)")
    volume_ax.set_title("Lung volumes")
    _distribution(percent_ax, rows, [f"infection_percent_{lung}" for lung in LUNGS], names, "infection (% of lung)")
    percent_ax.set_title("Infection burden")
    fig.suptitle(f"{len(rows)} case(s)")
    fig.tight_layout()
    return fig


def write_batch_summary(case_jsons: list[dict], out_dir) -> tuple[Path, Path]:
    """Write OUTDIR/summary.csv and OUTDIR/summary.png for the given CASE.json documents."""
    if not case_jsons:
        raise InputError("no case results to summarise", "segment at least one case first")
    rows = [summary_row(doc) for doc in case_jsons]
    out_dir = Path(out_dir)
    csv_path = write_text_atomic(out_dir / "summary.csv", _csv_text(rows))
    png_path = out_dir / "summary.png"
    fig = _summary_figure(rows)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    return csv_path, png_path
