"""Longitudinal comparison of two result folders of the same patient (baseline vs follow-up).

Only the numbers of the two CASE.json files are compared (no registration): lung volumes and infection
percentages per lung, overall and per zone. Cases are matched by name; when each folder holds exactly one
case they are paired whatever their names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.io.atomic import atomic_path, write_text_atomic
from lungseg_core.reports.zones import ZONES
from lungseg_core.io.tables import rows_to_csv_text
from lungseg_core.reports.quantify import LUNG_KEYS

COMPARE_COLUMNS = ("baseline_case", "followup_case", "lung", "zone", "measure", "baseline", "followup",
                   "change", "relative_change_percent")
LUNGS = LUNG_KEYS


def load_case_results(folder) -> dict[str, dict]:
    """CASE.json documents (those with a "measurements" key) in ``folder``, by case name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"result folder '{folder}' does not exist", "give a folder written by 'lungseg segment'")
    cases: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # not a result file of ours
        if isinstance(document, dict) and isinstance(document.get("measurements"), dict):
            cases[str(document.get("case") or path.stem)] = document
    if not cases:
        raise InputError(f"no CASE.json results with measurements in '{folder}'",
                         "run 'lungseg segment' into that folder first")
    return cases


def pair_cases(baseline: dict[str, dict], followup: dict[str, dict]) -> list[tuple[dict, dict]]:
    """Pairs of documents: same case name, or the only case of each folder."""
    common = sorted(set(baseline) & set(followup))
    if common:
        return [(baseline[name], followup[name]) for name in common]
    if len(baseline) == 1 and len(followup) == 1:
        return [(next(iter(baseline.values())), next(iter(followup.values())))]
    raise InputError(
        f"no case names in common between baseline ({', '.join(sorted(baseline)[:3])}...) and follow-up "
        f"({', '.join(sorted(followup)[:3])}...)",
        "give folders whose CASE.json names match, or folders with exactly one case each",
    )


def _measures(m: dict) -> list[tuple[str, str, str, float | None]]:
    """(lung, zone, measure, value) for every compared number of one case."""
    out = []
    for lung in LUNGS:
        out.append((lung, "all", "volume_ml", (m.get("volumes_ml") or {}).get(lung)))
        out.append((lung, "all", "infection_percent", (m.get("infection_percent") or {}).get(lung)))
    zones = m.get("zones") or {}
    for lung in LUNGS[:2]:
        for zone in ZONES:
            entry = (zones.get(lung) or {}).get(zone) or {}
            out.append((lung, zone, "volume_ml", entry.get("volume_ml")))
            out.append((lung, zone, "infection_percent", entry.get("percent")))
    return out


def compare_measurements(baseline: dict, followup: dict) -> list[dict]:
    """Rows of change (follow-up minus baseline) between two CASE.json documents."""
    rows = []
    before = _measures(baseline.get("measurements") or {})
    after = _measures(followup.get("measurements") or {})
    for (lung, zone, measure, b), (_, _, _, f) in zip(before, after):
        change = None if b is None or f is None else f - b
        relative = 100.0 * change / b if change is not None and b else None
        rows.append({"baseline_case": baseline.get("case"), "followup_case": followup.get("case"), "lung": lung,
                     "zone": zone, "measure": measure, "baseline": b, "followup": f, "change": change,
                     "relative_change_percent": relative})
    return rows


def _csv_text(rows: list[dict]) -> str:
    return rows_to_csv_text(rows, COMPARE_COLUMNS)


def _bars(ax, rows: list[dict], measure: str, title: str, ylabel: str) -> None:
    chosen = [r for r in rows if r["measure"] == measure and r["lung"] != "both_lungs"]
    labels = [f"{'R' if r['lung'] == 'right_lung' else 'L'} {r['zone']}" for r in chosen]
    x = np.arange(len(chosen))
    value = lambda v: np.nan if v is None else v  # noqa: E731 - missing numbers leave a gap
    ax.bar(x - 0.2, [value(r["baseline"]) for r in chosen], 0.4, label="baseline", color="#7f7f7f")
    ax.bar(x + 0.2, [value(r["followup"]) for r in chosen], 0.4, label="follow-up", color="#d62728")
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _compare_figure(pairs_rows: list[list[dict]]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2 * len(pairs_rows)), dpi=100)
    axes = fig.subplots(len(pairs_rows), 2, squeeze=False)
    for (volume_ax, percent_ax), rows in zip(axes, pairs_rows):
        name = f"{rows[0]['baseline_case']} -> {rows[0]['followup_case']}"
        _bars(percent_ax, rows, "infection_percent", f"{name}: infection (% of lung / zone)", "%")
        _bars(volume_ax, rows, "volume_ml", f"{name}: volume", "mL")
    fig.tight_layout()
    return fig


def pairing_notes(baseline: dict, followup: dict) -> list[str]:
    """What makes a pair's changes doubtful: other case names (paired as the only case of each folder: perhaps
    two patients), or other models (the change then mixes the disease's with the methods' difference)."""
    name = f"{baseline.get('case')} -> {followup.get('case')}"
    notes = [] if baseline.get("case") == followup.get("case") else [
        f"{name}: paired as the only case of each folder although the names differ; check it is one patient"]
    models = [{m.get("task"): (m.get("name"), m.get("sha256")) for m in doc.get("models") or []}
              for doc in (baseline, followup)]
    differing = [f"{task} {models[0][task][0]} vs {models[1][task][0]}"
                 for task in sorted(set(models[0]) & set(models[1]), key=str) if models[0][task] != models[1][task]]
    if differing:
        notes.append(f"{name}: segmented with other models ({', '.join(differing)}); the changes include the "
                     "difference between the methods: segment both scans with the same models")
    return notes


def compare_folders(baseline_dir, followup_dir, out_dir, note: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """Write OUT/compare.csv (long format, one number per row) and OUT/compare.png (bar charts); ``note`` gets
    what makes a pair doubtful (:func:`pairing_notes`)."""
    pairs = pair_cases(load_case_results(baseline_dir), load_case_results(followup_dir))
    for line in (line for b, f in pairs for line in pairing_notes(b, f)):
        (note or (lambda _line: None))(line)
    pairs_rows = [compare_measurements(b, f) for b, f in pairs]
    out_dir = Path(out_dir)
    csv_path = write_text_atomic(out_dir / "compare.csv", _csv_text([r for rows in pairs_rows for r in rows]))
    png_path = out_dir / "compare.png"
    fig = _compare_figure(pairs_rows[:8])  # a picture of more pairs would be unreadable; the CSV has all
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    return csv_path, png_path
