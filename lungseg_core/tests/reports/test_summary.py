"""Batch summary CSV and PNG from CASE.json documents."""

from __future__ import annotations

import csv

import pytest

from lungseg_core.errors import InputError
from lungseg_core.reports.quantify import quantify
from lungseg_core.reports.summary import SUMMARY_COLUMNS, write_batch_summary
from lungseg_core.tests.reports.test_quantify import LUNG_VOXELS, VOXEL_ML, box_case


def _documents():
    volume, lungs, infection = box_case()
    with_infection = {"case": "box_a", "measurements": quantify(volume, lungs, infection)}
    lungs_only = {"case": "box_b", "measurements": quantify(volume, lungs, None)}
    return [with_infection, lungs_only]


def test_csv_has_one_row_per_case_with_known_numbers(tmp_path):
    csv_path, png_path = write_batch_summary(_documents(), tmp_path / "out")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case"] for r in rows] == ["box_a", "box_b"]
    assert list(rows[0]) == SUMMARY_COLUMNS
    assert float(rows[0]["right_lung_ml"]) == pytest.approx(LUNG_VOXELS * VOXEL_ML, abs=1e-3)
    assert float(rows[0]["infection_percent_right_lung"]) == pytest.approx(100 / 3, abs=1e-3)
    assert rows[0]["severity_total"] == "5"
    assert rows[1]["infection_percent_both_lungs"] == "" and rows[1]["severity_total"] == ""
    assert png_path.read_bytes()[:4] == b"\x89PNG" and png_path.stat().st_size > 5_000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.csv", "summary.png"]


def test_a_case_without_lungs_shows_its_note_in_the_summary(tmp_path):
    import numpy as np

    volume, lungs, infection = box_case()
    documents = _documents() + [{"case": "no_lungs", "measurements": quantify(volume, np.zeros_like(lungs), None)}]
    csv_path, _ = write_batch_summary(documents, tmp_path / "out")
    with open(csv_path, newline="") as handle:
        notes = {r["case"]: r["notes"] for r in csv.DictReader(handle)}
    assert "no lung found" not in notes["box_a"] and notes["no_lungs"].startswith("no lung found")


def test_empty_batch_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no case results"):
        write_batch_summary([], tmp_path)
    assert not any(tmp_path.iterdir())
