"""Numbers from one case's segmentation: volumes, infection burden, zones, HU statistics and HU bands.

Everything is a voxel count times ``ct.voxel_volume_ml`` (true spacing, any direction). Infection is only
counted inside the lung masks when lungs are given (the pipeline already restricts it there; anything
outside is reported separately as ``infection_outside_lungs_ml`` and excluded from every percentage).

Missing inputs give ``None`` (never a missing key), so CASE.json and summary.csv keep one schema:
``lungs=None`` -> lung volumes, percentages, zones and HU bands are None; ``infection=None`` -> infection
volumes and percentages and the zones' infection fields are None. 2D slices get no zones (no head-foot
extent) and display-intensity (0-255) images no HU bands; ``notes`` says why.
"""

from __future__ import annotations

import numpy as np

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume
from lungseg_core.labels import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG
from lungseg_core.reports.hu_bands import (
    bands_from_histogram,
    merge_histograms,
    stats_from_histogram,
    value_histogram,
)
from lungseg_core.reports.zones import SEVERITY_MAX_PER_ZONE, lung_zone_measures

LUNG_KEYS = ("right_lung", "left_lung", "both_lungs")
SCHEMA_VERSION = 1
# Adult lungs hold 2-8 L; a scan through the lung bases or apices alone still shows a few hundred mL (the lung
# bases of the TotalSegmentator abdominal example: 116 mL), while the stomach and bowel gas of an upper-abdomen
# scan without lungs came out as 30 mL.
SMALL_LUNGS_ML = 250.0


def _check_labels(ct: Volume, labels: np.ndarray | None, what: str, allowed: tuple[int, ...]) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels.array if isinstance(labels, Volume) else labels)
    if labels.shape != ct.shape:
        raise InputError(
            f"the {what} labelmap has shape {labels.shape} but the CT has {ct.shape}",
            f"give a {what} labelmap on the CT's voxel grid",
        )
    # min/max instead of np.unique: two cheap passes over a clinical-size labelmap instead of a sort
    low, high = labels.min(), labels.max()
    integral = np.issubdtype(labels.dtype, np.integer) or bool(np.all(labels == np.round(labels)))
    if low < 0 or high > max(allowed) or not integral:
        unexpected = sorted(set(np.unique(labels).tolist()) - set((0,) + allowed))
        raise InputError(
            f"the {what} labelmap holds unexpected label values {unexpected[:5]}",
            f"use 0 for background and {', '.join(map(str, allowed))} as documented in lungseg_core.labels",
        )
    return labels.astype(np.uint8, copy=False)


def _joint_counts(lungs: np.ndarray | None, infection: np.ndarray | None) -> np.ndarray:
    """counts[lung label, infection label] in one pass (a missing labelmap counts as all 0)."""
    if lungs is None and infection is None:
        return np.zeros((3, 3), np.int64)
    shape = (lungs if lungs is not None else infection).shape
    lung_codes = lungs if lungs is not None else np.zeros(shape, np.uint8)
    infection_codes = infection if infection is not None else np.zeros(shape, np.uint8)
    codes = lung_codes * np.uint8(3) + infection_codes
    # count_nonzero per code on uint8 is ~10x faster than bincount, which would first copy to int64
    counts = np.array([0] + [np.count_nonzero(codes == c) for c in range(1, 9)], dtype=np.int64)
    counts[0] = codes.size - counts[1:].sum()
    return counts.reshape(3, 3)



def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _volumes_and_percentages(joint: np.ndarray, have_lungs: bool, have_infection: bool, voxel_ml: float) -> dict:
    rows = {"right_lung": joint[RIGHT_LUNG], "left_lung": joint[LEFT_LUNG], "both_lungs": joint[1:].sum(axis=0)}
    volumes: dict = {k: (int(row.sum()) * voxel_ml if have_lungs else None) for k, row in rows.items()}
    volumes.update(ggo=None, consolidation=None, infection=None, infection_outside_lungs_ml=None)
    out = {"volumes_ml": volumes, "infection_percent": dict.fromkeys(LUNG_KEYS),
           "ggo_percent": dict.fromkeys(LUNG_KEYS), "consolidation_percent": dict.fromkeys(LUNG_KEYS)}
    if not have_infection:
        return out
    counted = rows["both_lungs"] if have_lungs else joint.sum(axis=0)  # without lungs: every infection voxel
    volumes.update(ggo=int(counted[GGO]) * voxel_ml, consolidation=int(counted[CONSOLIDATION]) * voxel_ml,
                   infection=int(counted[1:].sum()) * voxel_ml)
    if not have_lungs:
        return out
    volumes["infection_outside_lungs_ml"] = int(joint[0, 1:].sum()) * voxel_ml
    for key, row in rows.items():
        total = int(row.sum())
        out["infection_percent"][key] = _percent(int(row[1:].sum()), total)
        out["ggo_percent"][key] = _percent(int(row[GGO]), total)
        out["consolidation_percent"][key] = _percent(int(row[CONSOLIDATION]), total)
    return out


def _histograms(ct: Volume, lungs, infection) -> dict:
    """Intensity histogram of each segment; both lungs are merged from right and left (no third pass)."""
    values = ct.array
    empty = (np.zeros(0), np.zeros(0, np.int64))
    hists: dict = dict.fromkeys(LUNG_KEYS + ("ggo", "consolidation"))
    if lungs is not None:
        hists["right_lung"] = value_histogram(values[lungs == RIGHT_LUNG])
        hists["left_lung"] = value_histogram(values[lungs == LEFT_LUNG])
        hists["both_lungs"] = merge_histograms(hists["right_lung"], hists["left_lung"])
    if infection is not None:
        inside = lungs > 0 if lungs is not None else True
        for key, label in (("ggo", GGO), ("consolidation", CONSOLIDATION)):
            hists[key] = value_histogram(values[(infection == label) & inside]) if np.any(infection == label) else empty
    return hists


def _zones_section(ct: Volume, lungs: np.ndarray, infection: np.ndarray | None) -> dict:
    affected = infection > 0 if infection is not None else None
    per_lung = {
        "right_lung": lung_zone_measures(ct, lungs == RIGHT_LUNG, affected),
        "left_lung": lung_zone_measures(ct, lungs == LEFT_LUNG, affected),
    }
    totals = [z["severity_total"] for z in per_lung.values() if z is not None]
    have_scores = affected is not None and totals and all(t is not None for t in totals)
    return {
        **per_lung,
        "severity_total": int(sum(totals)) if have_scores else None,
        "severity_max": 2 * 3 * SEVERITY_MAX_PER_ZONE,
        "definition": "thirds of lung height (LPS z) and halves of AP depth (LPS y) per lung; severity per "
        "zone 0: 0%, 1: (0,25]%, 2: (25,50]%, 3: (50,75]%, 4: >75%; total = sum of the 6 height zones "
        "(0-24). Descriptive, not a validated clinical score.",
    }


def lung_coverage_notes(lung_ml: float) -> list[str]:
    """Why a 3D case's lung volume needs a look: a batch over thousands of scans must not count a scan without
    lungs, or with gas below the diaphragm taken for them, as a healthy case."""
    if lung_ml == 0:
        return ["no lung found: not a chest CT, the lungs outside the field of view, or a damaged image; "
                "look at the image before using these numbers"]
    if lung_ml < SMALL_LUNGS_ML:
        return [f"only {lung_ml:.0f} mL of lung found: the scan shows the lung bases or apices alone, or it shows "
                "no lung and gas in the stomach or bowel was taken for lung; look at the image before using "
                "these numbers"]
    return []


def quantify(ct: Volume, lungs: np.ndarray | None, infection: np.ndarray | None) -> dict:
    """All case measurements as a JSON-ready dict (see the module docstring and docs/quantification.md)."""
    lungs = _check_labels(ct, lungs, "lung", (RIGHT_LUNG, LEFT_LUNG))
    infection = _check_labels(ct, infection, "infection", (GGO, CONSOLIDATION))
    units = "HU" if ct.intensity == "hu" else "display units (0-255 lung-window grey levels, not HU)"
    notes: list[str] = []
    if ct.is_2d:
        notes.append("2D slice: volumes are pixel areas x slice thickness (1 mm unless known); no zones")
        if not ct.spacing_known:
            notes.append("pixel spacing unknown (image file): volumes assume 1 mm pixels")
    if ct.intensity != "hu":
        notes.append("display-intensity image: intensity statistics are grey levels, HU bands not computed")
    if lungs is not None and not ct.is_2d:
        notes += lung_coverage_notes(np.count_nonzero(lungs) * ct.voxel_volume_ml)

    hists = _histograms(ct, lungs, infection)
    result: dict = {
        "schema_version": SCHEMA_VERSION,
        "voxel_volume_ml": ct.voxel_volume_ml,
        "intensity_units": units,
        **_volumes_and_percentages(_joint_counts(lungs, infection), lungs is not None, infection is not None,
                                   ct.voxel_volume_ml),
        "hu": {k: (stats_from_histogram(*h) if h is not None else None) for k, h in hists.items()},
        "zones": _zones_section(ct, lungs, infection) if lungs is not None and not ct.is_2d else None,
        "hu_bands": (
            {k: bands_from_histogram(*hists[k], ct.voxel_volume_ml) for k in LUNG_KEYS}
            if lungs is not None and ct.intensity == "hu" else None
        ),
        "notes": notes,
    }
    return result
