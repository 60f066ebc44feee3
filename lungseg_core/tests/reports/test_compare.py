"""Longitudinal comparison: pairing, analytic changes, files."""

from __future__ import annotations

import csv
import json

import pytest

from lungseg_core.errors import InputError
from lungseg_core.reports.compare import compare_folders, compare_measurements, load_case_results, pair_cases
from lungseg_core.reports.quantify import quantify
from lungseg_core.tests.reports.test_quantify import LUNG_VOXELS, VOXEL_ML, box_case


def case_document(name: str, ggo_slices: slice, shrink_left: bool = False) -> dict:
    """Box case whose right lung has GGO in ``ggo_slices``; optionally a left lung two rows thinner."""
    volume, lungs, infection = box_case()
    infection[:] = 0
    infection[ggo_slices, 2:8, 1:7] = 1
    if shrink_left:
        lungs[:, 6:8, 9:15] = 0  # left lung loses 2 of its 6 rows
    return {"case": name, "measurements": quantify(volume, lungs, infection)}


def write_folder(folder, *documents):
    folder.mkdir(parents=True, exist_ok=True)
    for document in documents:
        (folder / f"{document['case']}.json").write_text(json.dumps(document))
    (folder / "manifest.json").write_text(json.dumps({"not": "a case"}))  # ignored: no measurements
    return folder


def _row(rows, lung, zone, measure):
    (found,) = [r for r in rows if (r["lung"], r["zone"], r["measure"]) == (lung, zone, measure)]
    return found


def test_changes_are_follow_up_minus_baseline():
    baseline = case_document("p1", slice(8, 12))  # right upper third fully affected
    followup = case_document("p1", slice(10, 12), shrink_left=True)  # half of it left; left lung smaller
    rows = compare_measurements(baseline, followup)
    upper = _row(rows, "right_lung", "upper", "infection_percent")
    assert (upper["baseline"], upper["followup"]) == pytest.approx((100.0, 50.0))
    assert upper["change"] == pytest.approx(-50.0) and upper["relative_change_percent"] == pytest.approx(-50.0)
    overall = _row(rows, "right_lung", "all", "infection_percent")
    assert overall["change"] == pytest.approx(100 / 6 - 100 / 3)
    left = _row(rows, "left_lung", "all", "volume_ml")
    assert left["change"] == pytest.approx(-LUNG_VOXELS / 3 * VOXEL_ML)
    assert _row(rows, "right_lung", "all", "volume_ml")["change"] == 0
    # Halves follow each scan's own lung extent: 6 rows split 3/3 before, 4 rows split 2/2 after.
    for zone in ("ventral", "dorsal"):
        assert _row(rows, "left_lung", zone, "volume_ml")["change"] == pytest.approx(-LUNG_VOXELS / 6 * VOXEL_ML)


def test_pairing_by_name_or_single_case():
    a, b = {"x": {"case": "x"}, "y": {"case": "y"}}, {"y": {"case": "y"}, "z": {"case": "z"}}
    assert pair_cases(a, b) == [({"case": "y"}, {"case": "y"})]
    assert pair_cases({"scan1": {"case": "scan1"}}, {"scan2": {"case": "scan2"}}) == [({"case": "scan1"}, {"case": "scan2"})]
    with pytest.raises(InputError, match="no case names in common"):
        pair_cases({"a": {}, "b": {}}, {"c": {}})


def test_folder_without_results_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no CASE.json"):
        load_case_results(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        load_case_results(tmp_path / "missing")


def test_compare_folders_writes_csv_and_png(tmp_path):
    base = write_folder(tmp_path / "base", case_document("scan_2020", slice(8, 12)))
    follow = write_folder(tmp_path / "follow", case_document("scan_2021", slice(8, 10)))
    csv_path, png_path = compare_folders(base, follow, tmp_path / "out")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 + 2 * 5 * 2  # 3 lungs x 2 measures + 2 lungs x 5 zones x 2 measures
    upper = _row(rows, "right_lung", "upper", "infection_percent")
    assert float(upper["change"]) == pytest.approx(-50.0, abs=1e-3)
    assert (upper["baseline_case"], upper["followup_case"]) == ("scan_2020", "scan_2021")
    assert png_path.read_bytes()[:4] == b"\x89PNG" and png_path.stat().st_size > 10_000


def test_doubtful_pairs_are_noted_other_names_or_other_models(tmp_path):
    threshold = [{"task": "lungs", "name": "threshold", "sha256": None}]
    network = [{"task": "lungs", "name": "lungsegai-lungs", "sha256": "e4cb"}]
    notes: list[str] = []
    compare_folders(write_folder(tmp_path / "a", {**case_document("p1", slice(8, 12)), "models": threshold}),
                    write_folder(tmp_path / "b", {**case_document("p1", slice(8, 10)), "models": threshold}),
                    tmp_path / "out1", notes.append)
    assert notes == []
    compare_folders(write_folder(tmp_path / "c", {**case_document("p1", slice(8, 12)), "models": threshold}),
                    write_folder(tmp_path / "d", {**case_document("p2", slice(8, 10)), "models": network}),
                    tmp_path / "out2", notes.append)
    assert len(notes) == 2
    assert "names differ" in notes[0] and "p1 -> p2" in notes[0]
    assert "lungs threshold vs lungsegai-lungs" in notes[1] and "same models" in notes[1]
