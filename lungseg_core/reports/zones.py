"""Zonal split of each lung in patient space and the zone-based severity score.

Zones are defined on voxel centres in LPS millimetres (``Volume.zyx_to_lps``), never on array indices, so
flipped, permuted or oblique storage gives the same zones:

* upper / middle / lower: thirds of the lung's height along the head-foot axis (LPS z, +z = head). With
  ``z_min``/``z_max`` the extreme voxel centres of that lung and ``h = z_max - z_min``: lower is
  ``z < z_min + h/3``, middle ``z_min + h/3 <= z < z_min + 2h/3``, upper ``z >= z_min + 2h/3``.
* ventral / dorsal: halves of the lung's antero-posterior extent (LPS y, +y = posterior): ventral is
  ``y < (y_min + y_max) / 2``, dorsal the rest.

Severity per zone, from the affected percentage ``p`` (infection voxels / lung voxels of the zone x 100):
0 when ``p == 0`` exactly (no affected voxel), 1 when ``0 < p <= 25``, 2 when ``25 < p <= 50``, 3 when
``50 < p <= 75``, 4 when ``p > 75``. The total is the sum over the six height zones (three per lung), 0-24;
ventral/dorsal halves are a second view of the same voxels and are not added to the total. This is a
descriptive score in the spirit of lobe-based CT severity scores; it is not a validated clinical score
(thirds are not lobes, and the cut-offs are not calibrated against outcomes).
"""

from __future__ import annotations

import numpy as np

from lungseg_core.io.volume import Volume

HEIGHT_ZONES = ("upper", "middle", "lower")
DEPTH_ZONES = ("ventral", "dorsal")
ZONES = HEIGHT_ZONES + DEPTH_ZONES
SEVERITY_MAX_PER_ZONE = 4


def severity_score(percent: float | None) -> int | None:
    """0-4 score of one zone from its affected percentage (see module docstring for the exact edges)."""
    if percent is None:
        return None
    if percent <= 0:
        return 0
    for score, upper_edge in ((1, 25.0), (2, 50.0), (3, 75.0)):
        if percent <= upper_edge:
            return score
    return 4


def lps_axis_of_indices(volume: Volume, zyx: tuple[np.ndarray, ...], lps_axis: int) -> np.ndarray:
    """One LPS coordinate (0 = x, 1 = y, 2 = z; mm) of voxel centres given as ``np.nonzero`` index arrays.

    Equivalent to ``volume.zyx_to_lps(...)[:, lps_axis]`` but built from three small per-axis lookup tables,
    so millions of voxels cost one gather-and-add instead of an (N, 3) matrix product.
    """
    step = volume.direction @ np.diag(volume.spacing)  # column i: LPS step of array axis i (x, y, z)
    coordinate = np.full(zyx[0].shape, volume.origin[lps_axis], dtype=float)
    for numpy_axis, indices in enumerate(zyx):
        ijk_axis = 2 - numpy_axis
        table = step[lps_axis, ijk_axis] * np.arange(volume.shape[numpy_axis], dtype=float)
        coordinate += table[indices]
    return coordinate


def zone_members(volume: Volume, lung_indices: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    """For the voxels of one lung (``np.nonzero`` indices), a boolean per zone saying who belongs to it."""
    z = lps_axis_of_indices(volume, lung_indices, 2)
    y = lps_axis_of_indices(volume, lung_indices, 1)
    edges = _zone_edges((z, y))
    return {zone: ((z if zone in HEIGHT_ZONES else y) >= low) & ((z if zone in HEIGHT_ZONES else y) < high)
            for zone, (low, high) in edges.items()}


def _single_axis_profile(volume: Volume, lps_axis: int):
    """(numpy axis, LPS coordinate of each index) when one array axis alone moves along ``lps_axis``.

    True for every axis-aligned scan (any flips or permutation); then zones are whole slices and can be
    counted from per-slice sums instead of per-voxel coordinates. None for oblique directions.
    """
    step = volume.direction @ np.diag(volume.spacing)
    row = step[lps_axis]
    moving = np.nonzero(np.abs(row) > 1e-9 * np.abs(row).max())[0]
    if moving.size != 1:
        return None
    ijk_axis = int(moving[0])
    numpy_axis = 2 - ijk_axis
    coordinates = volume.origin[lps_axis] + row[ijk_axis] * np.arange(volume.shape[numpy_axis], dtype=float)
    return numpy_axis, coordinates


def _zone_edges(coordinates: np.ndarray) -> dict[str, tuple[float, float]]:
    """Half-open [low, high) coordinate ranges of each zone, from the lung's voxel-centre coordinates."""
    z_min, z_max = coordinates[0].min(), coordinates[0].max()
    height = z_max - z_min
    eps = 1e-6 * max(height, 1.0)
    lower_edge, upper_edge = z_min + height / 3.0 - eps, z_min + 2.0 * height / 3.0 - eps
    y_min, y_max = coordinates[1].min(), coordinates[1].max()
    y_middle = (y_min + y_max) / 2.0 - 1e-6 * max(y_max - y_min, 1.0)
    return {"upper": (upper_edge, np.inf), "middle": (lower_edge, upper_edge), "lower": (-np.inf, lower_edge),
            "ventral": (-np.inf, y_middle), "dorsal": (y_middle, np.inf)}


def _zone_counts_by_slices(volume: Volume, lung_mask, affected, profiles) -> dict[str, tuple[int, int | None]]:
    """(lung voxels, affected voxels) per zone from per-slice sums (axis-aligned storage)."""
    sums = {}
    for name, (numpy_axis, coords) in zip(("z", "y"), profiles):
        other = tuple(a for a in range(3) if a != numpy_axis)
        lung_profile = lung_mask.sum(axis=other)
        hit_profile = (affected & lung_mask).sum(axis=other) if affected is not None else None
        sums[name] = (coords, lung_profile, hit_profile)
    occupied = [sums[k][0][sums[k][1] > 0] for k in ("z", "y")]
    edges = _zone_edges(occupied)
    counts = {}
    for zone, (low, high) in edges.items():
        coords, lung_profile, hit_profile = sums["z" if zone in HEIGHT_ZONES else "y"]
        inside = (coords >= low) & (coords < high)
        counts[zone] = (int(lung_profile[inside].sum()),
                        int(hit_profile[inside].sum()) if hit_profile is not None else None)
    return counts


def _zone_counts_by_voxels(volume: Volume, lung_mask, affected) -> dict[str, tuple[int, int | None]]:
    """(lung voxels, affected voxels) per zone from each voxel's LPS position (oblique storage)."""
    indices = np.nonzero(lung_mask)
    members = zone_members(volume, indices)
    affected_here = affected[indices] if affected is not None else None
    return {zone: (int(np.count_nonzero(inside)),
                   int(np.count_nonzero(affected_here & inside)) if affected_here is not None else None)
            for zone, inside in members.items()}


def lung_zone_measures(
    volume: Volume, lung_mask: np.ndarray, affected: np.ndarray | None
) -> dict | None:
    """Volume, affected volume, affected percentage and severity of each zone of one lung.

    ``affected`` is a boolean infection mask (any infection label) or None when there is no infection
    result; then only zone volumes are given. Returns None for an empty lung.
    """
    if not np.any(lung_mask):
        return None
    profiles = (_single_axis_profile(volume, 2), _single_axis_profile(volume, 1))
    if all(p is not None for p in profiles):
        counts = _zone_counts_by_slices(volume, lung_mask, affected, profiles)
    else:
        counts = _zone_counts_by_voxels(volume, lung_mask, affected)
    voxel_ml = volume.voxel_volume_ml
    result: dict = {}
    for zone in ZONES:
        n_lung, n_affected = counts[zone]
        entry: dict = {"volume_ml": n_lung * voxel_ml, "infection_ml": None, "percent": None, "severity": None}
        if n_affected is not None:
            percent = 100.0 * n_affected / n_lung if n_lung else 0.0
            entry.update(infection_ml=n_affected * voxel_ml, percent=percent, severity=severity_score(percent))
        result[zone] = entry
    if affected is not None:
        result["severity_total"] = int(sum(result[z]["severity"] for z in HEIGHT_ZONES))
    else:
        result["severity_total"] = None
    return result
