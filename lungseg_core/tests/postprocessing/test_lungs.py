"""Lung post-processing: hole filling, small components, left/right split in patient space, clean-up."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungseg_core.io.volume import Volume
from lungseg_core.postprocessing import clean_lungs, fill_holes, remove_small_components, split_left_right
from lungseg_core.synthetic import make_chest_phantom
from lungseg_core.synthetic.phantoms import flip_axes
from lungseg_core.tests.conftest import dice

ORIENTATIONS = {"lps": (False, False, False), "ras_like": (True, True, False), "all_flipped": (True, True, True)}


@pytest.fixture(scope="module")
def touching():
    return make_chest_phantom(touching_lungs=True, ggo=False, consolidation=False)


def test_fill_holes_2d_per_slice_and_3d():
    mask = np.zeros((3, 7, 7), bool)
    mask[:, 1:6, 1:6] = True
    mask[:, 3, 3] = False  # a hole in every slice
    filled_2d = fill_holes(mask, axis=0)
    assert filled_2d[:, 3, 3].all()
    # in 3D the hole column reaches the top and bottom faces, so it is not a hole
    assert not fill_holes(mask)[:, 3, 3].any()
    closed = mask.copy()
    closed[0], closed[2] = True, True
    assert fill_holes(closed)[1, 3, 3]


def test_remove_small_components_known_answer():
    volume = Volume(np.zeros((1, 6, 6)), spacing=(10.0, 10.0, 10.0))  # 1 voxel = 1 mL
    mask = np.zeros((1, 6, 6), np.uint8)
    mask[0, 0:2, 0:2] = 2  # 4 mL
    mask[0, 5, 5] = 1  # 1 mL
    out = remove_small_components(mask, volume, min_volume_ml=2.0)
    assert out.dtype == mask.dtype
    assert (out[0, 0:2, 0:2] == 2).all()
    assert out.sum() == 8
    assert out[0, 5, 5] == 0


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_split_touching_lungs_in_patient_space(touching, name):
    phantom = touching.reoriented(ORIENTATIONS[name])
    labels = split_left_right(phantom.lungs > 0, phantom.ct)
    for value in (1, 2):
        assert dice(labels == value, phantom.lungs == value) >= 0.95, f"lung {value} in {name}"


def test_split_single_lung_uses_midline():
    phantom = make_chest_phantom(ggo=False, consolidation=False)
    only_left = phantom.lungs == 2
    labels = split_left_right(only_left, phantom.ct)
    assert set(np.unique(labels)) == {0, 2}


def test_clean_lungs_drops_islands_fills_vessels_and_labels_sides():
    phantom = make_chest_phantom(ggo=False, consolidation=False)
    raw = (phantom.ct.array < -400) & (phantom.lungs > 0)  # lungs with vessel holes
    raw[2:4, 5:8, 40:44] = True  # a small island far from the lungs
    assert not raw[phantom.lungs > 0].all()
    labels = clean_lungs(raw.astype(np.uint8), phantom.ct)
    assert labels[2:4, 5:8, 40:44].max() == 0
    for value in (1, 2):
        assert dice(labels == value, phantom.lungs == value) >= 0.98


def test_clean_lungs_swaps_wrong_sides_of_a_labelmap():
    phantom = make_chest_phantom(ggo=False, consolidation=False).reoriented(ORIENTATIONS["ras_like"])
    swapped = np.where(phantom.lungs > 0, 3 - phantom.lungs, 0).astype(np.uint8)
    labels = clean_lungs(swapped, phantom.ct)
    for value in (1, 2):
        assert dice(labels == value, phantom.lungs == value) >= 0.98


def test_clean_lungs_rejects_shape_mismatch():
    phantom = make_chest_phantom(shape=(8, 10, 12))
    with pytest.raises(ValueError):
        clean_lungs(np.zeros((8, 10, 11), np.uint8), phantom.ct)


def test_flip_axes_keeps_patient_sides():
    """Guard for the phantom helper the split tests rely on: flipped storage keeps physical positions."""
    phantom = make_chest_phantom(shape=(8, 20, 24), ggo=False, consolidation=False)
    flipped = flip_axes(phantom.ct, (True, False, False))
    assert np.allclose(flipped.zyx_to_lps(np.array([[0, 0, 23]])), phantom.ct.zyx_to_lps(np.array([[0, 0, 0]])))


def test_fill_holes_equals_labelling_the_whole_array():
    """fill_holes works in the mask's box; the answer is the same as scipy's on the whole array."""
    rng = np.random.default_rng(5)
    mask = np.zeros((10, 30, 30), bool)
    mask[2:8, 5:20, 8:25] = rng.random((6, 15, 17)) > 0.3
    for z in range(mask.shape[0]):
        np.testing.assert_array_equal(fill_holes(mask, axis=0)[z], ndimage.binary_fill_holes(mask[z]))
    np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    assert not fill_holes(np.zeros((3, 4, 5), bool)).any()


@pytest.mark.parametrize("gap", [0, 3])
def test_assign_to_seeds_equals_the_watershed(gap):
    """Regions touching one seed label are assigned directly; the answer is still the watershed's."""
    from skimage.segmentation import watershed

    from lungseg_core.postprocessing.lungs import _assign_to_seeds

    phantom = make_chest_phantom(shape=(24, 48, 48), touching_lungs=True, ggo=False, consolidation=False)
    mask = phantom.lungs > 0
    spacing = tuple(phantom.ct.spacing[::-1])
    # gap 0: seeds are the labels minus holes (each hole touches one label); gap 3: cores of eroded lungs,
    # so the shell between them touches both labels and the watershed decides
    seeds = np.where(ndimage.binary_erosion(mask, iterations=gap) if gap else mask, phantom.lungs, 0).astype(np.uint8)
    seeds[seeds > 0] *= (np.random.default_rng(6).random(int((seeds > 0).sum())) > 0.05)
    expected = watershed(-ndimage.distance_transform_edt(mask, sampling=spacing), seeds, mask=mask)
    np.testing.assert_array_equal(_assign_to_seeds(mask, seeds, spacing), expected)


def test_add_dense_lung_adds_only_dense_regions_touching_the_lungs():
    from lungseg_core.postprocessing import add_dense_lung

    phantom = make_chest_phantom(shape=(16, 64, 64), ggo=False, consolidation=False, seed=2)
    ct, reference = phantom.ct, phantom.lungs
    hu = ct.array.astype(np.float32).copy()
    classical = reference.copy()
    rows, cols = np.nonzero(reference[8] == 1)
    bay = np.zeros(reference.shape, bool)  # a consolidated bay of the right lung, open to the chest wall
    bay[6:11, rows.min():rows.min() + 6, cols.min():cols.max() + 1] = True
    bay &= reference == 1
    classical[bay] = 0
    hu[bay] = 20.0
    bronchogram = np.zeros(reference.shape, bool)  # air inside the consolidation: enclosed, so it is lung
    centre = np.rint(np.argwhere(bay).mean(axis=0)).astype(int)  # the middle of the bay
    assert bay[centre[0], centre[1], centre[2] - 1:centre[2] + 2].all()
    bronchogram[centre[0], centre[1], centre[2] - 1:centre[2] + 2] = True
    hu[bronchogram] = -950.0
    trachea = np.zeros(reference.shape, bool)  # air next to the lungs: never added
    trachea[:, 2:6, 30:34] = True
    hu[trachea] = -1000.0
    island = np.zeros(reference.shape, bool)  # dense and "lung" to the network, but touching no lung
    island[0:2, 0:3, 0:3] = True
    hu[island] = 30.0
    network = bay | trachea | island | (reference > 0)

    fused = add_dense_lung(classical, network, hu, ct)

    # the bay, bronchogram included, goes back to the right lung (less the bay's corners, under 6 mm across)
    assert np.mean(fused[bay] == 1) > 0.9 and np.all(fused[bronchogram] == 1) and not np.any(fused[bay] == 2)
    assert not fused[trachea & (classical == 0)].any() and not fused[island].any()
    np.testing.assert_array_equal(fused[classical > 0], classical[classical > 0])  # nothing classical is lost
    assert dice(fused > 0, reference > 0) > dice(classical > 0, reference > 0)
    np.testing.assert_array_equal(add_dense_lung(classical, np.zeros_like(network), hu, ct), classical)


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_add_dense_lung_leaves_out_tissue_with_lung_beyond_it(name):
    """Dense tissue inside a lung's curve (liver dome, heart) is not a consolidated bay of the lung."""
    from lungseg_core.postprocessing import add_dense_lung

    phantom = make_chest_phantom(shape=(16, 64, 64), ggo=False, consolidation=False, seed=2)
    reference = phantom.lungs
    _, y_of_right, x_of_right = np.nonzero(reference == 1)
    rows, columns = np.arange(reference.shape[1])[None, :, None], np.arange(reference.shape[2])[None, None, :]
    slices = np.zeros(reference.shape, bool)
    slices[5:11] = True
    # a dome pushed into the right lung from the middle: lung wraps it on every side but the medial one
    radius = (x_of_right.max() - x_of_right.min()) / 2
    dome = slices & (reference == 1) & ((columns - x_of_right.max()) ** 2 + (rows - y_of_right.mean()) ** 2 < radius ** 2)
    bay = slices & (reference == 2) & (columns > np.nonzero(reference == 2)[2].max() - 6)  # lateral part: open
    classical = np.where(dome | bay, 0, reference).astype(np.uint8)
    hu = np.where(dome | bay, 40.0, phantom.ct.array).astype(np.float32)
    network = dome | bay | (reference > 0)
    ct = Volume(hu, phantom.ct.spacing, phantom.ct.origin, phantom.ct.direction)

    def stored(array):  # the array as the reoriented CT stores it (flipping twice restores LPS storage)
        return flip_axes(Volume(array, ct.spacing, ct.origin, ct.direction), ORIENTATIONS[name]).array

    fused = stored(add_dense_lung(stored(classical), stored(network), stored(hu), flip_axes(ct, ORIENTATIONS[name])))

    assert not fused[dome].any()
    assert np.mean(fused[bay] == 2) > 0.9 and not np.any(fused[bay] == 1)  # less its parts under 6 mm across


def test_much_dense_lung_left_out_by_the_gate_gets_a_note():
    """The user must hear when the gate leaves out what may be consolidation against the mediastinum."""
    from lungseg_core.postprocessing.lungs import MUCH_DENSE_LUNG_LEFT_OUT_ML, left_out_dense_lung_notes

    ct = Volume(np.zeros((4, 20, 20), np.float32), spacing=(10.0, 10.0, 10.0))  # 1 mL voxels
    wide = np.zeros(ct.shape, bool)
    wide[:2] = True  # 800 mL the network called lung
    opened = np.zeros(ct.shape, bool)
    opened.reshape(-1)[np.flatnonzero(wide)[: 800 - int(MUCH_DENSE_LUNG_LEFT_OUT_ML)]] = True
    stages = {"wide": wide, "kept": opened, "open": opened}  # exactly the threshold left out, none of it kept
    (note,) = left_out_dense_lung_notes(stages, ct)
    assert note.startswith(f"{MUCH_DENSE_LUNG_LEFT_OUT_ML:.0f} mL of dense tissue") and "mediastinum" in note
    assert "left out" in note and "added" not in note
    opened.reshape(-1)[np.flatnonzero(wide & ~opened)[0]] = True  # one voxel less left out: under it
    assert left_out_dense_lung_notes(stages, ct) == []


def _medial_bays(reference: np.ndarray, planes: slice, width: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per lung (right, left), its ``width`` voxels nearest the body's middle in ``planes``, over 12 rows at the
    lungs' middle: where consolidation lies against the mediastinum, and where a network takes the heart for lung."""
    bays = []
    for side in (1, 2):
        lung = reference == side
        bay = np.zeros(lung.shape, bool)
        for plane in range(*planes.indices(len(lung))):
            rows, cols = np.nonzero(lung[plane])
            medial_is_high = cols.mean() < lung.shape[2] / 2
            for row in np.unique(rows):
                in_row = cols[rows == row]
                medial = in_row > in_row.max() - width if medial_is_high else in_row < in_row.min() + width
                bay[plane, row, in_row[medial]] = True
        rows = np.flatnonzero(bay.any(axis=(0, 2)))
        middle = (rows.min() + rows.max()) // 2
        bay[:, : middle - 6] = bay[:, middle + 6:] = False
        bays.append(bay)
    return bays[0], bays[1]


def region_means(probability: np.ndarray):
    """``region_lung_probability`` of ``dense_lung_stages`` from a lung probability array (same grid)."""
    probability = np.asarray(probability, np.float32)
    return lambda regions, count: np.asarray(ndimage.mean(probability, regions, np.arange(1, count + 1)), float)


def test_where_the_gate_leaves_out_much_it_keeps_the_regions_the_network_is_sure_of(monkeypatch):
    """Consolidation against the mediastinum has lung beyond it, so the chest-wall gate leaves it out, as it does
    the heart. Where the gate leaves out much (more than a healthy CT gives), the regions the network is sure of go
    back to their lung and the note says how much; a less sure region stays out; below that line, or without the
    network's probability, the gate alone decides."""
    import lungseg_core.postprocessing.lungs as lungs_module
    from lungseg_core.postprocessing.lungs import (CONFIDENT_DENSE_LUNG_PROBABILITY, add_dense_lung,
                                                   confident_dense_lung_ml, dense_lung_stages, left_out_dense_lung_ml,
                                                   left_out_dense_lung_notes)

    phantom = make_chest_phantom(shape=(16, 64, 64), ggo=False, consolidation=False, seed=2)
    reference, ct = phantom.lungs, phantom.ct
    consolidation, heart = _medial_bays(reference, slice(6, 11))
    classical = np.where(consolidation | heart, 0, reference).astype(np.uint8)
    hu = np.where(consolidation | heart, 20.0, ct.array).astype(np.float32)
    network = reference > 0  # the network takes both for lung ...
    probability = network.astype(np.float16)
    probability[consolidation] = CONFIDENT_DENSE_LUNG_PROBABILITY + 0.05  # ... but is sure only of the first
    probability[heart] = CONFIDENT_DENSE_LUNG_PROBABILITY - 0.1

    gate_only = dense_lung_stages(classical, network, hu, ct)
    assert not gate_only["open"][consolidation | heart].any()  # both have lung beyond them
    left_out_ml = left_out_dense_lung_ml(gate_only, ct)
    assert 0 < left_out_ml < lungs_module.MUCH_DENSE_LUNG_LEFT_OUT_ML  # a phantom's bays are small: move the line

    monkeypatch.setattr(lungs_module, "MUCH_DENSE_LUNG_LEFT_OUT_ML", left_out_ml)
    stages = dense_lung_stages(classical, network, hu, ct, region_means(probability))
    fused = add_dense_lung(classical, network, hu, ct, stages)
    assert np.mean(fused[consolidation] == 1) > 0.9 and not fused[heart].any()
    np.testing.assert_array_equal(fused[classical > 0], classical[classical > 0])
    (note,) = left_out_dense_lung_notes(stages, ct)
    added_ml = confident_dense_lung_ml(stages, ct)
    assert 0.4 * left_out_ml < added_ml < 0.6 * left_out_ml  # the consolidation's half
    assert f"The {added_ml:.0f} mL it was sure of" in note and f"other {left_out_ml - added_ml:.0f} mL left out" in note
    unstaged = add_dense_lung(classical, network, hu, ct, region_lung_probability=region_means(probability))
    np.testing.assert_array_equal(unstaged, fused)

    for line, given in ((left_out_ml + 0.01, region_means(probability)), (left_out_ml, None)):  # under the line; none
        monkeypatch.setattr(lungs_module, "MUCH_DENSE_LUNG_LEFT_OUT_ML", line)
        fused = add_dense_lung(classical, network, hu, ct, region_lung_probability=given)
        assert not fused[consolidation | heart].any()


def _lung_beyond_by_plain_march(point, centre, lungs, body, spacing_yx):
    """Oracle: march one ray to the array's edge, one voxel at a time."""
    direction = (np.asarray(point, float) - centre) * spacing_yx
    unit = direction / (np.linalg.norm(direction) + 1e-6) / spacing_yx
    distance = step = float(min(spacing_yx))
    while True:
        ahead = np.rint(np.asarray(point) + unit * distance).astype(int)
        if np.any(ahead < 0) or np.any(ahead >= lungs.shape):
            return False
        if lungs[tuple(ahead)]:
            return True
        if not body[tuple(ahead)]:
            return False
        distance += step


def test_ray_march_stopping_at_the_lung_box_gives_the_plain_march_answer():
    from lungseg_core.postprocessing.lungs import _lung_beyond

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:60, :70]
    lungs = np.zeros((3, 60, 70), bool)
    lungs[0] = (yy - 30) ** 2 / 300 + (xx - 18) ** 2 / 80 < 1  # one lung only, off the body's centre
    lungs[1] = lungs[0] | ((yy - 30) ** 2 / 300 + (xx - 52) ** 2 / 80 < 1)
    lungs[1, 28:31, 69] = True  # lung at the array's edge
    body = np.ones_like(lungs)
    body[:, :, :2] = False
    body[2, 40:, 30:40] = False  # a concave notch; plane 2 holds no lung at all
    anywhere = np.column_stack([rng.integers(0, 3, 300), rng.integers(0, 60, 300), rng.integers(0, 70, 300)])
    medial = np.column_stack([rng.integers(0, 3, 300), rng.integers(15, 45, 300), rng.integers(24, 46, 300)])
    points = np.concatenate([anywhere, medial])
    points = points[~lungs[tuple(points.T)]]
    centres = np.column_stack([points[:, 0], np.full(len(points), 30.0), np.full(len(points), 35.0)])
    spacing = np.array([0.8, 0.7])
    covered = _lung_beyond(points, centres, lungs, body, spacing)
    expected = [_lung_beyond_by_plain_march(p[1:], c[1:], lungs[p[0]], body[p[0]], spacing) for p, c in zip(points, centres)]
    np.testing.assert_array_equal(covered, expected)
    assert 0.1 < covered.mean() < 0.9


def test_add_dense_lung_leaves_out_thin_rims_and_tissue_meeting_a_lung_only_in_another_plane():
    """A network's partial-volume rim along the pleura, and soft tissue above a lung apex (it meets the lung
    only across planes), are not consolidated lung; a bulky consolidated bay is. ``dense_lung_stages`` tells
    which rule dropped each."""
    from lungseg_core.postprocessing import add_dense_lung
    from lungseg_core.postprocessing.lungs import dense_lung_stages

    phantom = make_chest_phantom(shape=(16, 64, 64), ggo=False, consolidation=False, seed=2)
    reference = phantom.lungs
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    left = reference == 2
    planes = np.zeros(reference.shape, bool)
    planes[6:11] = True
    rim = planes & ndimage.binary_dilation(left, in_plane) & ~(reference > 0)  # one voxel wide
    rim[:, :, : int(np.nonzero(left)[2].mean())] = False  # its lateral half, open to the chest wall
    top = int(np.nonzero(reference.reshape(len(reference), -1).any(axis=1))[0].max())
    apex = np.zeros(reference.shape, bool)
    apex[top + 1] = reference[top] == 1  # right above the right lung's highest plane
    rows, cols = np.nonzero(reference[8] == 1)
    bay = np.zeros(reference.shape, bool)
    bay[6:11, rows.min():rows.min() + 6, cols.min():cols.max() + 1] = True
    bay &= reference == 1
    classical = np.where(bay, 0, reference).astype(np.uint8)
    hu = np.where(rim | apex | bay, 20.0, phantom.ct.array).astype(np.float32)
    assert rim.sum() > 20 and apex.sum() > 20

    network = rim | apex | bay | (reference > 0)
    fused = add_dense_lung(classical, network, hu, phantom.ct)
    stages = dense_lung_stages(classical, network, hu, phantom.ct)

    assert not fused[rim].any() and not fused[apex].any()
    assert np.mean(fused[bay] == 1) > 0.9
    # which rule dropped what: the rim goes at the thin rule; the apex passes the gate and only the same-plane
    # rule stops it; each stage is a subset of the one before
    assert stages["dense"][rim].all() and not stages["wide"][rim].any()
    assert stages["open"][apex].all() and stages["open"][bay].mean() > 0.9
    names = list(stages)
    assert names == ["network", "dense", "wide", "kept", "open"]
    assert all(not (stages[after] & ~stages[before]).any() for before, after in zip(names, names[1:]))
    assert not stages["network"][classical > 0].any()


def test_thin_walls_around_an_air_bronchogram_count_as_bulky_consolidation():
    """A consolidation 7 voxels across whose walls around an enclosed air bronchogram are one voxel thick stays
    whole; the same walls without the air inside them (a thin ring on its own) would be opened away."""
    from lungseg_core.postprocessing.lungs import THINNEST_DENSE_LUNG_MM, _without_thin_parts

    volume = Volume(np.zeros((3, 20, 20), np.float32), spacing=(3.5, 3.5, 6.0))
    consolidation = np.zeros(volume.shape, bool)
    consolidation[:, 5:12, 5:12] = True
    consolidation[:, [5, 5, 11, 11], [5, 11, 5, 11]] = False  # rounded corners, as a disk-shaped opening leaves
    walls = consolidation.copy()
    walls[:, 6:11, 6:11] = False  # the bronchogram: air, so not dense lung, enclosed by the walls
    no_lungs = np.zeros(volume.shape, bool)
    kept = _without_thin_parts(walls, no_lungs, volume, THINNEST_DENSE_LUNG_MM, 0)
    np.testing.assert_array_equal(kept, walls)
    thin_line = np.zeros(volume.shape, bool)
    thin_line[:, 5, 5:12] = True  # one voxel wide and enclosing nothing
    assert not _without_thin_parts(thin_line, no_lungs, volume, THINNEST_DENSE_LUNG_MM, 0).any()
