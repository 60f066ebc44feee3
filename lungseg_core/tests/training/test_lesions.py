"""Synthetic lesions: only inside the lungs, HU in the bands, vessels and bronchi kept, lung labels unchanged."""

import numpy as np
import pytest

from lungseg_core.errors import InputError
from lungseg_core.labels import CONSOLIDATION, GGO
from lungseg_core.synthetic import make_chest_phantom
from lungseg_core.synthetic.lesions import (BRONCHUS_HU, CONSOLIDATION_HU, GGO_HU, VESSEL_HU, LesionSpec,
                                            insert_lesions)


@pytest.fixture(scope="module")
def host():
    phantom = make_chest_phantom(shape=(24, 64, 64), ggo=False, consolidation=False, noise_hu=10.0, seed=3)
    return phantom


@pytest.mark.parametrize("kind", ["ggo", "consolidation"])
def test_lesions_stay_in_lungs_with_hu_in_band(host, kind):
    lungs_before = host.lungs.copy()
    spec = LesionSpec(count=(2, 3), kinds=(kind,), diameter_mm=(20, 50))
    ct, infection = insert_lesions(host.ct, host.lungs, spec, seed=1)
    np.testing.assert_array_equal(host.lungs, lungs_before)  # lung labels untouched
    assert ct.shape == host.ct.shape and ct.array.dtype == host.ct.array.dtype
    assert ct.same_geometry(host.ct)
    assert infection.any()
    assert not np.any(infection[host.lungs == 0])  # lesions only inside the lungs
    outside = host.lungs == 0
    np.testing.assert_array_equal(ct.array[outside], host.ct.array[outside])  # nothing else changes
    label, band = (GGO, GGO_HU) if kind == "ggo" else (CONSOLIDATION, CONSOLIDATION_HU)
    assert set(np.unique(infection)) == {0, label}
    original = host.ct.array.astype(float)
    if kind == "ggo":
        painted = (infection == GGO) & (original <= VESSEL_HU)
        kept = (infection == GGO) & (original > VESSEL_HU)
    else:
        painted = (infection == CONSOLIDATION) & (original > BRONCHUS_HU + 50)
        kept = np.zeros_like(painted)
    values = ct.array[painted].astype(float)
    assert values.min() >= band[0] - 1 and values.max() <= band[1] + 1
    np.testing.assert_array_equal(ct.array[kept], host.ct.array[kept])  # vessels stay in GGO


def test_vessels_inside_ggo_are_kept():
    phantom = make_chest_phantom(shape=(24, 64, 64), ggo=False, consolidation=False, noise_hu=5.0, seed=0)
    vessels = (phantom.lungs > 0) & (phantom.ct.array > VESSEL_HU)
    assert vessels.any()
    spec = LesionSpec(count=(6, 6), kinds=("ggo",), diameter_mm=(60, 80))
    ct, infection = insert_lesions(phantom.ct, phantom.lungs, spec, seed=2)
    covered = vessels & (infection == GGO)
    assert covered.any()
    np.testing.assert_array_equal(ct.array[covered], phantom.ct.array[covered])


def test_air_bronchograms_survive_consolidation():
    phantom = make_chest_phantom(shape=(24, 64, 64), ggo=False, consolidation=False, noise_hu=5.0, seed=0)
    array = phantom.ct.array.copy()
    bronchus = np.zeros(array.shape, bool)
    bronchus[8:16, 30:33, 14:17] = True  # a small airway inside the right lung
    assert np.all(phantom.lungs[bronchus] > 0)
    array[bronchus] = -1000
    ct = phantom.ct.with_array(array)
    spec = LesionSpec(count=(8, 8), kinds=("consolidation",), diameter_mm=(80, 100))
    out, infection = insert_lesions(ct, phantom.lungs, spec, seed=5)
    core = np.zeros_like(bronchus)
    core[9:15, 31, 15] = True
    core &= infection == CONSOLIDATION
    assert core.any()
    assert np.all(out.array[core] < -900)  # the airway lumen stays air inside consolidation
    solid = (infection == CONSOLIDATION) & ~bronchus
    assert np.median(out.array[solid]) > -150


def test_same_seed_same_lesions_and_display_input_refused(host):
    a = insert_lesions(host.ct, host.lungs, seed=7)
    b = insert_lesions(host.ct, host.lungs, seed=7)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0].array, b[0].array)
    display = host.ct.with_array(np.clip(host.ct.array, 0, 255), intensity="display")
    with pytest.raises(InputError, match="Hounsfield"):
        insert_lesions(display, host.lungs, seed=0)


def test_subpleural_lesions_open_onto_the_lung_surface(host):
    """Subpleural lesions are centred on the lung surface, so far more of them borders non-lung tissue."""
    from scipy import ndimage

    surface = host.lungs.astype(bool) & ~ndimage.binary_erosion(host.lungs.astype(bool), border_value=1)

    def surface_share(placement):
        shares = []
        for seed in range(4):
            spec = LesionSpec(count=(2, 2), kinds=("consolidation",), diameter_mm=(10, 14), placement=placement)
            infection = insert_lesions(host.ct, host.lungs, spec, seed=seed)[1] > 0
            shares.append((infection & surface).sum() / infection.sum())
        return float(np.mean(shares))

    assert surface_share("subpleural") > 1.5 * surface_share("anywhere")
    with pytest.raises(InputError, match="placement"):
        insert_lesions(host.ct, host.lungs, LesionSpec(placement="central"), seed=0)


def _two_half_disc_lungs(depth: int) -> np.ndarray:
    """Two half-discs facing each other across a 16-pixel mediastinum (x 32..48), on ``depth`` slices."""
    yy, xx = np.mgrid[:60, :80]
    disc = (yy - 30) ** 2 + (xx - 40) ** 2 < 28 ** 2
    return np.stack([disc & ((xx < 32) | (xx > 48))] * depth)


def test_costal_zone_is_the_chest_wall_side_of_two_lungs():
    """The flat (mediastinal) sides of the half-discs are deep inside the joint outline."""
    from lungseg_core.synthetic.lesions import costal_zone

    lungs = _two_half_disc_lungs(3)
    zone = costal_zone(lungs, spacing_yx=(1.0, 1.0), depth_mm=4.0)
    assert zone[1, 30, 13] and zone[1, 4, 40] and zone[1, 30, 66]  # lateral walls, front of the hull
    assert not zone[1, 30, 31] and not zone[1, 30, 49]  # mediastinal surfaces of the lungs
    halved = costal_zone(lungs, spacing_yx=(2.0, 2.0), depth_mm=4.0)
    assert halved.sum() < zone.sum()  # the depth is in mm, not voxels


def test_costal_lesions_avoid_the_mediastinal_surface():
    from lungseg_core.io.volume import Volume

    lungs = _two_half_disc_lungs(12).astype(np.uint8)
    ct = Volume(np.where(lungs > 0, -850, 40).astype(np.int16), spacing=(1.0, 1.0, 1.0), intensity="hu")
    medial = np.zeros(lungs.shape, bool)
    medial[:, 12:48, 26:54] = True  # along the flat sides, away from the outline's chords

    def medial_share(placement):
        spec = LesionSpec(count=(6, 6), kinds=("consolidation",), diameter_mm=(4, 6), placement=placement)
        infection = insert_lesions(ct, lungs, spec, seed=3)[1] > 0
        return (infection & medial).sum() / infection.sum()

    assert medial_share("costal") < 0.05 < medial_share("subpleural")
