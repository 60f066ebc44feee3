"""Intensity kind detection and window mapping."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.errors import InputError
from lungseg_core.io.volume import Volume
from lungseg_core.preprocessing.intensity import (
    LUNG_WINDOW,
    as_display,
    check_intensity,
    check_rescaled_raw,
    hu_from_display,
    intensity_summary,
    lung_window,
    to_unit_range,
)


def _display_volume(phantom, intensity: str) -> Volume:
    unit = to_unit_range(phantom.ct.array, "hu")
    return Volume(np.rint(unit * 255).astype(np.uint8), intensity=intensity)


def test_lung_window_is_w1500_l600():
    low, high = LUNG_WINDOW
    assert high - low == 1500 and (low + high) / 2 == -600


def test_hu_phantom_is_hu(phantom):
    assert check_intensity(phantom.ct) == "hu"


@pytest.mark.parametrize("padding", [-2048, -3024])
def test_hu_with_fov_padding_is_hu(phantom, padding):
    array = phantom.ct.array.copy()
    array[:, :10, :] = padding
    assert check_intensity(phantom.ct.with_array(array)) == "hu"


def test_display_volume_marked_display(phantom):
    assert check_intensity(_display_volume(phantom, "display"), allow_display=False) == "display"


def test_0_255_unmarked_needs_allow_display(phantom):
    volume = _display_volume(phantom, "hu")
    assert check_intensity(volume, allow_display=True) == "display"
    with pytest.raises(InputError) as info:
        check_intensity(volume, allow_display=False)
    assert "8-bit" in str(info.value) and "--intensity display" in str(info.value)


def test_raw_0_4095_asks_for_rescale(phantom):
    raw = phantom.ct.with_array(phantom.ct.array.astype(np.int32) + 1024)
    assert raw.array.min() >= 0 and raw.array.max() > 255
    with pytest.raises(InputError) as info:
        check_intensity(raw)
    message = str(info.value)
    assert "rescale" in message and "1024" in message and "RescaleIntercept" in message
    assert "--intensity raw" in message


def test_mr_like_is_refused_naming_the_modality():
    rng = np.random.default_rng(1)
    array = np.zeros((4, 64, 64), np.float32)
    array[:, 16:48, 16:48] = rng.uniform(200, 700, (4, 32, 32))
    array[0, 0, 0] = 9000.0  # MR has no fixed scale: bright spots far above CT bone
    with pytest.raises(InputError) as info:
        check_intensity(Volume(array))
    assert "MR" in str(info.value) and "CT" in str(info.value)


def test_constant_image_is_refused():
    with pytest.raises(InputError) as info:
        check_intensity(Volume(np.full((3, 16, 16), -1000, np.int16)))
    assert "constant" in str(info.value)


def test_normalised_and_zscored_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="normalised"):
        check_intensity(Volume(rng.uniform(0, 1, (2, 16, 16)).astype(np.float32)))
    with pytest.raises(InputError, match="no air below -500"):
        check_intensity(Volume(rng.normal(0, 1, (2, 16, 16)).astype(np.float32)))


def test_intensity_summary_values():
    array = np.concatenate([np.full(50, -1000.0), np.full(50, 40.0)]).reshape(1, 10, 10)
    summary = intensity_summary(array)
    assert summary["min"] == -1000 and summary["max"] == 40
    assert summary["p1"] == pytest.approx(-1000) and summary["p99"] == pytest.approx(40)
    assert summary["fraction_below_-900"] == pytest.approx(0.5)


def test_window_mapping_values():
    hu = np.array([-3024, -1350, -600, 150, 1000], np.int16)
    unit = to_unit_range(hu, "hu")
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(lung_window(hu, "hu"), unit)
    np.testing.assert_allclose(to_unit_range(np.array([0, 127.5, 255, 300]), "display"), [0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(to_unit_range(np.array([-100.0, 100.0]), "hu", window=(-100, 100)), [0, 1])


def test_window_mapping_rejects_bad_kind_and_window():
    with pytest.raises(ValueError):
        to_unit_range(np.zeros(3), "mr")
    with pytest.raises(ValueError):
        to_unit_range(np.zeros(3), "hu", window=(100, -100))


def test_hu_from_display_inverts_inside_the_window():
    hu = np.array([-1300.0, -860.0, -600.0, -300.0, 100.0])
    display = to_unit_range(hu, "hu") * 255
    np.testing.assert_allclose(hu_from_display(display), hu, atol=1e-2)
    assert hu_from_display(np.array([0.0]))[0] == pytest.approx(LUNG_WINDOW[0])


def test_display_choice_refuses_hu_naming_the_range_and_the_fix(phantom):
    with pytest.raises(InputError) as info:
        as_display(phantom.ct)
    message = str(info.value)
    assert "-1024..767" in message and "Hounsfield" in message and "--intensity auto" in message


def test_display_choice_clips_a_small_overshoot_and_refuses_more(phantom):
    array = _display_volume(phantom, "hu").array.astype(np.float32)
    array[0, 0, :2] = [-3.0, 258.0]  # a cubic resampling of an 8-bit export
    volume = as_display(Volume(array))
    assert volume.intensity == "display" and volume.array.min() == 0 and volume.array.max() == 255
    array[0, 0, 0] = 300.0
    with pytest.raises(InputError, match="0..255"):
        as_display(Volume(array))


def test_raw_choice_result_must_look_like_ct(phantom):
    check_rescaled_raw(phantom.ct)  # raw scanner values minus 1024: a CT in HU
    with pytest.raises(InputError) as info:  # a CT already in HU, minus 1024
        check_rescaled_raw(phantom.ct.with_array(phantom.ct.array - 1024.0))
    assert "already had air below -500" in str(info.value) and "drop '--intensity raw'" in str(info.value)
    with pytest.raises(InputError, match="does not look like CT in HU"):  # an 8-bit image minus 1024
        check_rescaled_raw(Volume(_display_volume(phantom, "hu").array - 1024.0))
