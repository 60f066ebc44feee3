"""HU bands (edge inclusivity) and histogram-based statistics against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from lungseg_core.reports.hu_bands import HU_BANDS, band_masks, hu_band_volumes, intensity_stats


@pytest.mark.parametrize(
    "hu, band",
    [(-1024, "emphysema_like"), (-951, "emphysema_like"), (-950.5, "emphysema_like"), (-950, "well_aerated"),
     (-751, "well_aerated"), (-750, "poorly_aerated"), (-401, "poorly_aerated"), (-400, "non_aerated"),
     (0, "non_aerated"), (0.5, "above_0"), (1, "above_0"), (3000, "above_0")],
)
def test_band_edges(hu, band):
    masks = band_masks(np.array([hu]))
    assert [name for name, inside in masks.items() if inside[0]] == [band]


@pytest.mark.parametrize("hu, band", [(-980, "emphysema_like"), (-850, "well_aerated"), (-600, "poorly_aerated"),
                                      (-100, "non_aerated")])
def test_constant_block_is_entirely_in_its_band(hu, band):
    block = np.full((3, 4, 5), hu, np.int16)
    bands = hu_band_volumes(block, voxel_volume_ml=0.002)
    assert bands[band]["percent"] == 100.0
    assert bands[band]["volume_ml"] == pytest.approx(60 * 0.002)
    assert all(bands[other]["percent"] == 0.0 for other, *_ in HU_BANDS if other != band)


def test_mixed_blocks_split_by_voxel_count():
    values = np.concatenate([np.full(30, -960), np.full(10, -800), np.full(60, -300)]).astype(np.int16)
    bands = hu_band_volumes(values, 1.0)
    assert (bands["emphysema_like"]["percent"], bands["well_aerated"]["percent"], bands["non_aerated"]["percent"]) \
        == (30.0, 10.0, 60.0)
    assert bands["poorly_aerated"]["volume_ml"] == 0


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_statistics_equal_numpy(dtype):
    rng = np.random.default_rng(1)
    values = rng.normal(-700, 150, 5001).astype(dtype)
    stats = intensity_stats(values)
    expected = np.percentile(values.astype(float), [5, 25, 50, 75, 95])
    got = [stats[k] for k in ("p5", "p25", "p50", "p75", "p95")]
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert stats["mean"] == pytest.approx(values.astype(float).mean(), abs=1e-3)
    assert stats["std"] == pytest.approx(values.astype(float).std(), abs=1e-3)


def test_empty_segment_gives_none():
    assert intensity_stats(np.array([], np.int16)) is None
    assert hu_band_volumes(np.array([], np.int16), 1.0) is None
