"""Classical lung / infection segmentation on phantoms and real CTs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungseg_core.io import read_volume
from lungseg_core.io.volume import Volume, patient_left_score
from lungseg_core.models.classical import classical_infection, classical_lungs, display_to_hu
from lungseg_core.synthetic import make_chest_phantom
from lungseg_core.tests.conftest import dice, shared_file

ORIENTATIONS = {"lps": (False, False, False), "ras_like": (True, True, False), "all_flipped": (True, True, True)}


@pytest.fixture(scope="module")
def base_phantom():
    return make_chest_phantom()


@pytest.mark.parametrize("name", list(ORIENTATIONS))
@pytest.mark.parametrize("touching", [False, True])
def test_phantom_lungs_sides_and_dice(base_phantom, name, touching):
    phantom = (make_chest_phantom(touching_lungs=True) if touching else base_phantom).reoriented(ORIENTATIONS[name])
    labels = classical_lungs(phantom.ct)
    assert labels.shape == phantom.ct.shape and labels.dtype == np.uint8
    # the dorsal consolidation is lost by thresholding: score lungs away from it
    unaffected = phantom.infection != 2
    for value in (1, 2):
        score = dice((labels == value) & unaffected, (phantom.lungs == value) & unaffected)
        assert score >= 0.95, f"lung {value}, {name}, touching={touching}: Dice {score:.3f}"


def test_phantom_vessels_filled_trachea_and_bowel_gas_excluded(base_phantom):
    phantom = base_phantom
    labels = classical_lungs(phantom.ct)
    air = phantom.ct.array < -400
    vessels = (phantom.lungs > 0) & (phantom.ct.array > -200) & (phantom.infection == 0)
    assert vessels.sum() > 50
    assert (labels[vessels] > 0).mean() > 0.95
    outside_air = air & (phantom.lungs == 0)
    trachea_and_gas = outside_air & ndimage.binary_fill_holes(~air, np.ones((1, 3, 3)))
    assert trachea_and_gas.sum() > 100  # the phantom has both; guard against a vacuous check
    assert not (labels > 0)[trachea_and_gas].any()


def test_phantom_labels_follow_patient_side_not_array_order(base_phantom):
    phantom = base_phantom.reoriented(ORIENTATIONS["ras_like"])
    labels = classical_lungs(phantom.ct)
    assert patient_left_score(phantom.ct, labels == 1) < patient_left_score(phantom.ct, labels == 2)


def test_ctchest4_dice(ctchest4_path, ctchest4_reference):
    volume = read_volume(ctchest4_path)
    labels = classical_lungs(volume)
    assert labels.shape == ctchest4_reference.array.shape
    for value in (1, 2):
        score = dice(labels == value, ctchest4_reference.array == value)
        assert score >= 0.97, f"CTChest4 lung {value}: Dice {score:.4f}"


@pytest.mark.slow
def test_lidc_0002_anatomy():
    volume = read_volume(shared_file("lidc/LIDC-IDRI-0002.nii.gz"))
    labels = classical_lungs(volume)
    litres = [np.count_nonzero(labels == v) * volume.voxel_volume_ml / 1000 for v in (1, 2)]
    for value, amount in zip((1, 2), litres):
        assert 1.5 <= amount <= 4.0, f"lung {value}: {amount:.2f} L"
    assert patient_left_score(volume, labels == 1) < patient_left_score(volume, labels == 2)
    # LIDC-0002 is stored LPS-identity: numpy axis 0 runs foot -> head
    assert np.allclose(volume.direction, np.eye(3))
    trachea = _trachea_column(volume.array)
    assert trachea.sum() > 1000
    assert not (labels > 0)[ndimage.binary_dilation(trachea, iterations=2)].any()  # 1.4 mm margin
    # nothing in the abdomen: below the lowest slice where lung air covers a sizeable area
    lung_air = (volume.array < -400) & (volume.array > -1500)
    rows = np.nonzero(labels.any(axis=(1, 2)))[0]
    assert rows.min() > 0 or lung_air[0].sum() > 0
    assert labels[: max(rows.min() - 1, 0)].max(initial=0) == 0
    per_slice = np.count_nonzero(labels, axis=(1, 2))
    assert per_slice[rows.min()] < 0.2 * per_slice.max()  # bases taper; no abdominal blob at the bottom


def _box_ct(lung_hu: float, gas: bool) -> tuple[Volume, np.ndarray, np.ndarray]:
    """A 5 mm body cylinder with two lung-like ellipsoids at the top and, below them, a larger pocket of air
    alone (bowel gas), as in an abdominal CT that shows the lung bases."""
    z, y, x = np.meshgrid(np.arange(40), np.arange(64), np.arange(64), indexing="ij")
    ct = np.full(z.shape, -1000.0)
    ct[(y - 32) ** 2 + (x - 32) ** 2 <= 29**2] = 40.0
    lungs = np.zeros(z.shape, np.uint8)
    for value, centre_x in ((1, 18), (2, 46)):  # LPS-identity storage: x grows to the patient's left
        lungs[((z - 34) / 6.0) ** 2 + ((y - 34) / 12.0) ** 2 + ((x - centre_x) / 9.0) ** 2 <= 1] = value
    ct[lungs > 0] = lung_hu
    bowel = ((z - 14) / 10.0) ** 2 + ((y - 28) / 14.0) ** 2 + ((x - 32) / 16.0) ** 2 <= 1
    if gas:
        ct[bowel] = -1000.0
    ct += np.random.default_rng(5).normal(0, 15, ct.shape)
    return Volume(ct.astype(np.float32), spacing=(5.0, 5.0, 5.0)), lungs, bowel


def test_bowel_gas_under_the_lung_bases_is_not_lung():
    volume, lungs, bowel = _box_ct(lung_hu=-850.0, gas=True)
    assert bowel.sum() > (lungs > 0).sum()  # the gas is the largest air region, larger than both lungs
    labels = classical_lungs(volume)
    assert not labels[bowel].any()
    for value in (1, 2):
        assert dice(labels == value, lungs == value) > 0.9


def test_gas_dark_lungs_are_kept_beside_a_small_lung_density_pocket():
    from lungseg_core.models.classical import _without_bowel_gas

    volume, lungs, _ = _box_ct(lung_hu=-990.0, gas=False)  # severe emphysema: lungs as dark as gas
    pocket = np.zeros(lungs.shape, bool)
    pocket[39, 30:36, 29:35] = True  # 36 voxels of 0.125 mL: 4.5 mL, lung density, above the lungs' centre
    inside = (lungs > 0) | pocket
    hu = np.where(pocket, -800.0, volume.array)
    body = volume.array > -400  # the body cylinder (its front-to-back extent is what counts)
    np.testing.assert_array_equal(_without_bowel_gas(inside, hu, body, 0.125), inside)
    pocket[38, 30:36, 29:35] = True  # 9 mL: lung density, but under 8 % of the lungs
    inside |= pocket
    hu = np.where(pocket, -800.0, hu)
    np.testing.assert_array_equal(_without_bowel_gas(inside, hu, body, 0.125), inside)


def test_gas_in_front_of_the_body_middle_is_not_lung():
    """Stomach gas rises to the front of a supine patient; lungs always reach the back of the chest."""
    volume, lungs, _ = _box_ct(lung_hu=-850.0, gas=False)
    z, y, x = np.meshgrid(*(np.arange(n) for n in lungs.shape), indexing="ij")
    stomach = ((z - 20) / 8.0) ** 2 + ((y - 12) / 5.0) ** 2 + ((x - 40) / 10.0) ** 2 <= 1  # front, patient left
    ct = np.where(stomach, -1000.0, volume.array)
    with_lungs = classical_lungs(volume.with_array(ct.astype(np.float32)))
    assert not with_lungs[stomach].any()
    for value in (1, 2):
        assert dice(with_lungs == value, lungs == value) > 0.9
    without_lungs = np.where(lungs > 0, 40.0, ct).astype(np.float32)  # an upper-abdomen scan: gas only
    assert not classical_lungs(volume.with_array(without_lungs)).any()


def test_upper_abdomen_scan_without_lungs_has_no_lung():
    volume = read_volume(shared_file("totalsegmentator_example/example_ct_dicom"))
    assert not classical_lungs(volume).any()  # before: 17 / 13 mL of stomach and bowel gas


def test_abdominal_ct_shows_lung_bases_not_bowel_gas():
    volume = read_volume(shared_file("totalsegmentator_example/example_ct.nii.gz"))
    labels = classical_lungs(volume)
    from lungseg_core.preprocessing.orientation import CanonicalView

    view = CanonicalView(volume)
    canonical = view.forward(labels)
    rows = np.nonzero(canonical.any(axis=(1, 2)))[0]
    assert rows.min() >= 0.85 * canonical.shape[0]  # only the top slices: the bases over liver and spleen
    hu = view.forward(volume.array)
    assert np.mean(hu[canonical > 0] < -950) < 0.05  # lung parenchyma, not air alone
    for value in (1, 2):
        ml = np.count_nonzero(labels == value) * volume.voxel_volume_ml
        assert 20 <= ml <= 150, f"lung {value}: {ml:.0f} mL"


def _trachea_column(hu: np.ndarray) -> np.ndarray:
    """Track the trachea down from the top slice until its cross-section grows (carina) or vanishes."""
    column = np.zeros(hu.shape, bool)
    top = hu.shape[0] - 1

    def airway_parts(z):
        return ndimage.label(ndimage.gaussian_filter(hu[z].astype(np.float32), 1.0) < -850)[0]

    parts = airway_parts(top)
    ids, counts = np.unique(parts[parts > 0], return_counts=True)
    centres = np.array(ndimage.center_of_mass(parts > 0, parts, ids))
    offset = np.linalg.norm(centres - np.array(hu.shape[1:]) / 2, axis=1) + ((counts < 20) | (counts > 3000)) * 1e9
    previous = parts == ids[np.argmin(offset)]
    for z in range(top, 0, -1):
        parts = airway_parts(z)
        overlap, sizes = np.unique(parts[previous & (parts > 0)], return_counts=True)
        if overlap.size == 0 or np.count_nonzero(sizes >= 0.2 * previous.sum()) >= 2:
            break  # lost, or split at the carina
        current = parts == overlap[np.argmax(sizes)]
        if current.sum() > 2.0 * previous.sum() + 50:
            break  # merged with a lung
        column[z], previous = current, current
    return column


def test_covid_display_slice_two_lungs():
    volume = read_volume(shared_file("covid_semiseg/train/images/11.jpg"))
    assert volume.is_2d and volume.intensity == "display"
    labels = classical_lungs(volume)
    assert labels.shape == volume.shape
    areas = [np.count_nonzero(labels == v) for v in (1, 2)]
    assert min(areas) > 0.08 * labels[0].size, areas
    # this collection stores slices transposed (spine on the right), so the lungs are stacked vertically;
    # transposing a radiological display puts the patient's right lung at the top
    rows = [np.argwhere(labels[0] == v)[:, 0].mean() for v in (1, 2)]
    assert rows[0] < rows[1]


def test_display_slice_in_radiological_layout():
    """A synthetic screenshot in ordinary layout: patient right on the image left gets label 1."""
    phantom = make_chest_phantom(ggo=False, consolidation=False)
    slice_hu = phantom.ct.array[24].astype(np.float32)
    display = np.clip((display_to_hu_inverse(slice_hu)), 0, 255)
    volume = Volume(display[None], intensity="display", is_2d=True, metadata={"spacing_known": False})
    labels = classical_lungs(volume)[0]
    cols = [np.argwhere(labels == v)[:, 1].mean() for v in (1, 2)]
    assert cols[0] < cols[1]
    reference = phantom.lungs[24]
    for value in (1, 2):
        assert dice(labels == value, reference == value) >= 0.9


def display_to_hu_inverse(hu: np.ndarray) -> np.ndarray:
    return (hu + 1350.0) / 1500.0 * 255.0


def test_display_to_hu_lung_window():
    np.testing.assert_allclose(display_to_hu(np.array([0.0, 255.0])), [-1350.0, 150.0])


def test_classical_infection_phantom():
    phantom = make_chest_phantom(noise_hu=10.0)
    infection = classical_infection(phantom.ct, phantom.lungs)
    assert infection.dtype == np.uint8 and infection.shape == phantom.ct.shape
    assert not infection[phantom.lungs == 0].any()
    ggo_truth = phantom.infection == 1
    assert (infection[ggo_truth] == 1).mean() > 0.6
    assert dice(infection == 1, ggo_truth) > 0.6
    assert (infection[phantom.infection == 2] == 2).mean() > 0.5


def test_classical_infection_suppresses_thin_vessels():
    """A 2 mm vessel through aerated lung is not consolidation; a 16 mm dense blob is."""
    shape = (40, 40, 40)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ct = np.full(shape, -850.0)
    vessel = (y - 10) ** 2 + (x - 10) ** 2 <= 1
    blob = (z - 20) ** 2 + (y - 26) ** 2 + (x - 26) ** 2 <= 64
    ct[vessel], ct[blob] = 40.0, 20.0
    volume = Volume(ct.astype(np.int16), spacing=(1.0, 1.0, 1.0))
    infection = classical_infection(volume, np.ones(shape, np.uint8))
    inner_vessel = vessel & (z > 4) & (z < 35)
    assert (infection[inner_vessel] == 2).mean() < 0.05
    assert not (infection[inner_vessel] == 1).any()
    assert (infection[blob] == 2).mean() > 0.6


def test_classical_infection_empty_lungs():
    phantom = make_chest_phantom(shape=(8, 16, 16))
    assert classical_infection(phantom.ct, np.zeros(phantom.ct.shape, np.uint8)).max() == 0


# ----------------------------------------------------------------------------------------------------------
# infection: lesions found, healthy lungs (vessels, pleura, thick slices) left alone
# ----------------------------------------------------------------------------------------------------------
def _infection_ml(infection: np.ndarray, volume: Volume) -> float:
    return float(np.count_nonzero(infection) * volume.voxel_volume_ml)


def test_classical_infection_phantom_lesion_dice(base_phantom):
    phantom = base_phantom
    infection = classical_infection(phantom.ct, phantom.lungs)
    assert dice(infection == 1, phantom.infection == 1) > 0.7
    # the dorsal consolidation touches the pleura: it must survive the boundary margin
    assert dice(infection == 2, phantom.infection == 2) > 0.7


def test_classical_infection_phantom_vessels_only_is_nearly_clean():
    phantom = make_chest_phantom(ggo=False, consolidation=False)
    infection = classical_infection(phantom.ct, phantom.lungs)
    lung_ml = np.count_nonzero(phantom.lungs) * phantom.ct.voxel_volume_ml
    assert _infection_ml(infection, phantom.ct) < 0.01 * lung_ml
    assert not (infection == 1).any()  # vessel walls and their halo are not GGO


def test_classical_infection_never_outside_given_lungs(base_phantom):
    phantom = base_phantom
    lungs = phantom.lungs.copy()
    lungs[:, :, : lungs.shape[2] // 2 + 5] = 0  # only part of the left lung (holds the GGO blob)
    infection = classical_infection(phantom.ct, lungs)
    assert infection.any()
    assert not infection[lungs == 0].any()


def test_classical_infection_ctchest4_healthy(ctchest4_path):
    """CTChest4 is a healthy chest (10 mm slices): vessels and partial volume must not read as GGO."""
    volume = read_volume(ctchest4_path)
    lungs = classical_lungs(volume)
    infection = classical_infection(volume, lungs)
    assert _infection_ml(infection, volume) < 30.0


def test_classical_infection_display_slice_ggo_patch():
    """A lung-window screenshot (no spacing) of a phantom slice: the GGO blob is found, vessels are not GGO."""
    phantom = make_chest_phantom()
    z = int(np.argmax(np.count_nonzero(phantom.infection == 1, axis=(1, 2))))
    display = np.clip(display_to_hu_inverse(phantom.ct.array[z].astype(np.float32)), 0, 255).astype(np.uint8)
    volume = Volume(display[None], intensity="display", is_2d=True, metadata={"spacing_known": False})
    infection = classical_infection(volume, phantom.lungs[z][None])[0]
    assert dice(infection == 1, phantom.infection[z] == 1) > 0.7
    # vessels running through the blob belong to the opacity (as a reader outlines it); judge the others
    away = ~ndimage.binary_dilation(phantom.infection[z] == 1, iterations=3)
    vessels = (phantom.lungs[z] > 0) & (phantom.ct.array[z] > -200) & (phantom.infection[z] == 0) & away
    assert vessels.sum() > 10 and (infection[vessels] == 1).mean() < 0.05


@pytest.mark.slow
def test_classical_infection_lidc_healthy_and_inserted_ggo():
    from lungseg_core.synthetic.lesions import LesionSpec, insert_lesions

    volume = read_volume(shared_file("lidc/LIDC-IDRI-0001.nii.gz"))
    lungs = classical_lungs(volume)
    lung_ml = np.count_nonzero(lungs) * volume.voxel_volume_ml
    assert _infection_ml(classical_infection(volume, lungs), volume) < 0.01 * lung_ml
    ct, truth = insert_lesions(volume, lungs, LesionSpec(count=(2, 3), kinds=("ggo",)), seed=2)
    assert dice(classical_infection(ct, lungs) == 1, truth == 1) > 0.6


# ----------------------------------------------------------------------------------------------------------
# fast building blocks: the same numbers as the plain numpy / scipy operations they replace
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, bool, np.float32])
def test_block_mean_equals_numpy_float32_mean(dtype):
    from lungseg_core.models.classical import _block_mean

    rng = np.random.default_rng(3)
    for shape, factors in (((7, 11, 13), (2, 3, 3)), ((4, 9, 9), (1, 2, 4)), ((5, 6, 6), (3, 1, 1))):
        values = rng.integers(-3024, 3072, shape) if dtype in (np.int16, np.float32) else rng.integers(0, 256, shape)
        array = (values > 128) if dtype is bool else values.astype(dtype)
        padded = np.pad(array, [(0, (-n) % f) for n, f in zip(shape, factors)], mode="edge")
        blocks = padded.reshape([d for n, f in zip(padded.shape, factors) for d in (n // f, f)])
        expected = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
        result = _block_mean(array, factors)
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result, expected)


def test_grey_opening_with_a_ball_equals_scipy():
    from lungseg_core.models.classical import _grey_opening
    from lungseg_core.postprocessing.lungs import _ball

    rng = np.random.default_rng(4)
    for radius, spacing, planar in ((6.5, (2.5, 1.4, 1.4), None), (6.5, (10.0, 1.5, 1.5), 0), (3.0, (1.0, 2.0, 1.5), None)):
        ball = _ball(radius, spacing, planar_axis=planar)
        image = np.round(rng.normal(-700, 250, (12, 24, 20))).astype(np.float32)
        np.testing.assert_array_equal(_grey_opening(image, ball), ndimage.grey_opening(image, footprint=ball))
