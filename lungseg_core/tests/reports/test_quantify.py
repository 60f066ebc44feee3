"""quantify() against box phantoms whose every number is known analytically."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume
from lungseg_core.reports.quantify import quantify
from lungseg_core.synthetic import flip_axes

SHAPE = (12, 10, 16)  # z, y, x
SPACING = (0.7, 1.3, 2.5)  # x, y, z mm: anisotropic on purpose
VOXEL_ML = 0.7 * 1.3 * 2.5 / 1000.0
LUNG_VOXELS = 6 * 6 * 12  # x 6, y 6, z 12 per lung
GGO_VOXELS = 6 * 6 * 4  # the whole upper third of the right lung
CONS_VOXELS = 6 * 1 * 4  # one ventral row of the lower third of the left lung


def box_case(direction=None, origin=(-20.0, -30.0, 100.0)):
    """Two box lungs in LPS-identity storage (array x grows to patient left) plus known infection and HU.

    Right lung x 1..6, left lung x 9..14, both y 2..7 and z 0..11 (z grows to the head).
    Right lung's upper third (z 8..11) is all GGO; the left lung's lower third has consolidation in row y=2.
    """
    lungs = np.zeros(SHAPE, np.uint8)
    lungs[:, 2:8, 1:7] = 1
    lungs[:, 2:8, 9:15] = 2
    infection = np.zeros(SHAPE, np.uint8)
    infection[8:12, 2:8, 1:7] = 1
    infection[0:4, 2, 9:15] = 2
    ct = np.full(SHAPE, 40, np.int16)
    ct[lungs == 1] = -900
    ct[lungs == 2] = -800
    ct[infection == 1] = -500
    ct[infection == 2] = 20
    volume = Volume(ct, SPACING, origin, np.eye(3) if direction is None else direction, name="box")
    return volume, lungs, infection


def flipped(volume, lungs, infection, flips):
    axes = [2 - i for i, f in enumerate(flips) if f]
    flip = (lambda a: np.ascontiguousarray(np.flip(a, axes))) if axes else (lambda a: a.copy())
    return flip_axes(volume, flips), flip(lungs), flip(infection)


def swapped_x_z(volume, lungs, infection):
    """Same physical voxels stored with the array's x and z axes exchanged (a permuted direction)."""
    direction = volume.direction[:, [2, 1, 0]]
    spacing = (volume.spacing[2], volume.spacing[1], volume.spacing[0])
    t = lambda a: np.ascontiguousarray(np.transpose(a, (2, 1, 0)))  # noqa: E731
    return Volume(t(volume.array), spacing, volume.origin, direction, name="box"), t(lungs), t(infection)


def test_volumes_and_percentages_are_voxel_counts_times_true_voxel_volume():
    m = quantify(*box_case())
    v = m["volumes_ml"]
    assert v["right_lung"] == pytest.approx(LUNG_VOXELS * VOXEL_ML)
    assert v["left_lung"] == pytest.approx(LUNG_VOXELS * VOXEL_ML)
    assert v["both_lungs"] == pytest.approx(2 * LUNG_VOXELS * VOXEL_ML)
    assert v["ggo"] == pytest.approx(GGO_VOXELS * VOXEL_ML)
    assert v["consolidation"] == pytest.approx(CONS_VOXELS * VOXEL_ML)
    assert v["infection"] == pytest.approx((GGO_VOXELS + CONS_VOXELS) * VOXEL_ML)
    assert v["infection_outside_lungs_ml"] == 0
    assert m["infection_percent"]["right_lung"] == pytest.approx(100 / 3)
    assert m["infection_percent"]["left_lung"] == pytest.approx(100 * 24 / 432)
    assert m["infection_percent"]["both_lungs"] == pytest.approx(100 * (144 + 24) / 864)
    assert m["ggo_percent"] == pytest.approx({"right_lung": 100 / 3, "left_lung": 0.0, "both_lungs": 100 * 144 / 864})
    assert m["consolidation_percent"]["left_lung"] == pytest.approx(100 * 24 / 432)
    assert m["consolidation_percent"]["right_lung"] == 0.0


def test_zones_thirds_halves_and_severity_on_box_lungs():
    zones = quantify(*box_case())["zones"]
    third, half = LUNG_VOXELS / 3 * VOXEL_ML, LUNG_VOXELS / 2 * VOXEL_ML
    for lung in ("right_lung", "left_lung"):
        for zone in ("upper", "middle", "lower"):
            assert zones[lung][zone]["volume_ml"] == pytest.approx(third)
        for zone in ("ventral", "dorsal"):
            assert zones[lung][zone]["volume_ml"] == pytest.approx(half)
    right, left = zones["right_lung"], zones["left_lung"]
    # GGO fills the right upper third only
    assert right["upper"]["percent"] == pytest.approx(100.0) and right["upper"]["severity"] == 4
    assert right["middle"]["percent"] == 0 and right["middle"]["severity"] == 0
    assert right["lower"]["severity"] == 0
    assert right["ventral"]["percent"] == pytest.approx(100 / 3) and right["dorsal"]["percent"] == pytest.approx(100 / 3)
    # consolidation: 24 of the 144 voxels of the left lower third, all ventral (y=2 is the most anterior row)
    assert left["lower"]["infection_ml"] == pytest.approx(24 * VOXEL_ML)
    assert left["lower"]["percent"] == pytest.approx(100 * 24 / 144) and left["lower"]["severity"] == 1
    assert left["upper"]["severity"] == 0 and left["middle"]["severity"] == 0
    assert left["ventral"]["percent"] == pytest.approx(100 * 24 / 216) and left["dorsal"]["percent"] == 0
    assert right["severity_total"] == 4 and left["severity_total"] == 1
    assert zones["severity_total"] == 5 and zones["severity_max"] == 24


def test_hu_statistics_and_bands_on_constant_blocks():
    m = quantify(*box_case())
    right = m["hu"]["right_lung"]
    assert right["mean"] == pytest.approx((288 * -900 + 144 * -500) / 432, abs=1e-3)
    assert right["p50"] == -900 and right["p5"] == -900 and right["p95"] == -500
    assert m["hu"]["ggo"] == {"mean": -500, "std": 0, "p5": -500, "p25": -500, "p50": -500, "p75": -500, "p95": -500}
    assert m["hu"]["consolidation"]["mean"] == 20
    bands = m["hu_bands"]
    assert bands["right_lung"]["well_aerated"]["percent"] == pytest.approx(200 / 3)
    assert bands["right_lung"]["poorly_aerated"]["volume_ml"] == pytest.approx(144 * VOXEL_ML)
    assert bands["right_lung"]["emphysema_like"]["percent"] == 0
    assert bands["left_lung"]["well_aerated"]["percent"] == pytest.approx(100 * 408 / 432)
    assert bands["left_lung"]["above_0"]["percent"] == pytest.approx(100 * 24 / 432)
    for lung in ("right_lung", "left_lung", "both_lungs"):
        assert sum(b["percent"] for b in bands[lung].values()) == pytest.approx(100.0)
    assert m["intensity_units"] == "HU"


FLIPS = [(fx, fy, fz) for fx in (False, True) for fy in (False, True) for fz in (False, True)]


@pytest.mark.parametrize("flips", FLIPS, ids=lambda f: "flip_" + ("".join("xyz"[i] for i in range(3) if f[i]) or "none"))
def test_every_number_is_independent_of_storage_orientation(flips):
    """LPS, RAS (x and y flipped) and every other flip describe the same patient: same numbers."""
    _same_numbers(quantify(*flipped(*box_case(), flips)), quantify(*box_case()))


def test_permuted_axes_give_the_same_numbers():
    _same_numbers(quantify(*swapped_x_z(*box_case())), quantify(*box_case()))


def test_oblique_rotation_about_head_foot_axis_keeps_thirds_and_volumes():
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    m = quantify(*box_case(direction=rotation))
    assert m["volumes_ml"]["right_lung"] == pytest.approx(LUNG_VOXELS * VOXEL_ML)
    for zone in ("upper", "middle", "lower"):
        assert m["zones"]["right_lung"][zone]["volume_ml"] == pytest.approx(LUNG_VOXELS / 3 * VOXEL_ML)
    assert m["zones"]["right_lung"]["upper"]["severity"] == 4


def _same_numbers(a, b, path="") -> None:
    if isinstance(b, dict):
        assert set(a) == set(b), path
        for key in b:
            _same_numbers(a[key], b[key], f"{path}.{key}")
    elif isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9), path
    else:
        assert a == b, path


def test_flipped_z_storage_still_puts_ggo_in_the_upper_zone():
    """Array index 0 is the head after a z flip: zones must follow LPS z, not the index."""
    volume, lungs, infection = flipped(*box_case(), (False, False, True))
    assert infection[0:4].any() and not infection[8:12, :, 1:7].any()  # GGO now at low indices
    zones = quantify(volume, lungs, infection)["zones"]["right_lung"]
    assert zones["upper"]["severity"] == 4 and zones["lower"]["severity"] == 0


def test_missing_lungs_or_infection_give_none_not_missing_keys():
    volume, lungs, infection = box_case()
    no_infection = quantify(volume, lungs, None)
    assert no_infection["volumes_ml"]["right_lung"] == pytest.approx(LUNG_VOXELS * VOXEL_ML)
    assert no_infection["volumes_ml"]["ggo"] is None and no_infection["infection_percent"]["both_lungs"] is None
    assert no_infection["hu"]["ggo"] is None
    assert no_infection["zones"]["right_lung"]["upper"]["volume_ml"] == pytest.approx(LUNG_VOXELS / 3 * VOXEL_ML)
    assert no_infection["zones"]["right_lung"]["upper"]["severity"] is None
    assert no_infection["zones"]["severity_total"] is None
    no_lungs = quantify(volume, None, infection)
    assert no_lungs["volumes_ml"]["right_lung"] is None and no_lungs["zones"] is None and no_lungs["hu_bands"] is None
    assert no_lungs["volumes_ml"]["ggo"] == pytest.approx(GGO_VOXELS * VOXEL_ML)
    assert no_lungs["ggo_percent"]["right_lung"] is None
    assert set(no_lungs) == set(quantify(volume, lungs, infection))


def test_infection_outside_lungs_is_reported_and_excluded():
    volume, lungs, infection = box_case()
    infection[0, 0, 0] = 1  # outside both lungs
    m = quantify(volume, lungs, infection)
    assert m["volumes_ml"]["infection_outside_lungs_ml"] == pytest.approx(VOXEL_ML)
    assert m["volumes_ml"]["ggo"] == pytest.approx(GGO_VOXELS * VOXEL_ML)


def test_a_3d_image_without_lungs_gets_a_note_not_a_silent_zero():
    volume, lungs, infection = box_case()
    assert not any("no lung found" in note for note in quantify(volume, lungs, infection)["notes"])
    empty = quantify(volume, np.zeros_like(lungs), np.zeros_like(infection))
    assert empty["volumes_ml"]["right_lung"] == 0
    assert any("no lung found" in note for note in empty["notes"])


def test_too_little_lung_for_a_chest_ct_gets_a_note():
    volume, lungs, infection = box_case()  # two small boxes: 2 mL of lung
    assert any(note.startswith("only 2 mL of lung found") for note in quantify(volume, lungs, infection)["notes"])
    large = Volume(volume.array, (10.0, 10.0, 10.0), volume.origin, volume.direction)  # 1 mL voxels: 864 mL
    assert not any("lung found" in note for note in quantify(large, lungs, infection)["notes"])


def test_display_intensity_2d_slice_states_units_and_skips_bands_and_zones():
    array = np.full((1, 20, 20), 200, np.uint8)
    lungs = np.zeros(array.shape, np.uint8)
    lungs[0, 5:15, 2:8], lungs[0, 5:15, 12:18] = 1, 2
    array[lungs > 0] = 30
    volume = Volume(array, intensity="display", is_2d=True, metadata={"spacing_known": False})
    m = quantify(volume, lungs, np.zeros_like(lungs))
    assert m["hu_bands"] is None and m["zones"] is None
    assert "not HU" in m["intensity_units"]
    assert m["hu"]["right_lung"]["mean"] == 30
    assert m["volumes_ml"]["right_lung"] == pytest.approx(60 / 1000)
    assert any("spacing unknown" in note for note in m["notes"])


def test_bad_labelmaps_raise_input_error():
    volume, lungs, infection = box_case()
    with pytest.raises(InputError, match="shape"):
        quantify(volume, lungs[:-1], infection)
    bad = lungs.copy()
    bad[0, 0, 0] = 5
    with pytest.raises(InputError, match="unexpected label values"):
        quantify(volume, bad, infection)


def test_result_is_json_serialisable():
    import json

    text = json.dumps(quantify(*box_case()))
    assert '"severity_total": 5' in text


@pytest.mark.slow
def test_clinical_size_runs_in_a_few_seconds():
    import time

    shape = (261, 512, 512)
    lungs = np.zeros(shape, np.uint8)
    lungs[20:240, 100:400, 60:240] = 1
    lungs[20:240, 100:400, 270:450] = 2
    infection = np.zeros(shape, np.uint8)
    infection[150:240, 100:250, 60:240] = 1
    ct = np.full(shape, -850, np.int16)
    volume = Volume(ct, (0.68, 0.68, 1.25))
    start = time.perf_counter()
    m = quantify(volume, lungs, infection)
    elapsed = time.perf_counter() - start
    assert m["volumes_ml"]["right_lung"] == pytest.approx(220 * 300 * 180 * volume.voxel_volume_ml)
    assert elapsed < 15.0, f"quantify took {elapsed:.1f} s on 512x512x261"
