"""Dataset readers on tiny fixtures of every layout, built in tmp_path from phantoms with known labels."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from lungseg_core.errors import InputError
from lungseg_core.io import Volume, write_segmentation
from lungseg_core.labels import CONSOLIDATION, GGO, LEFT_LUNG, RIGHT_LUNG
from lungseg_core.synthetic import make_chest_phantom
from lungseg_core.training.datasets import LAYOUTS, open_dataset


@pytest.fixture(scope="module")
def phantom():
    return make_chest_phantom(shape=(12, 48, 48), seed=1)


def _write(volume, array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume.with_array(np.asarray(array)).to_sitk(), str(path))


def _covid19_tree(root, phantom):
    """Two cases: one in HU, one stored 0-255 like the Radiopaedia cases; labels 1 left, 2 right, 3 infection."""
    rows = []
    theirs = np.zeros_like(phantom.lungs)
    theirs[phantom.lungs == LEFT_LUNG] = 1
    theirs[phantom.lungs == RIGHT_LUNG] = 2
    both = theirs.copy()
    both[phantom.infection > 0] = 3
    for name, ct in (("coronacases_org_001", phantom.ct.array),
                     ("radiopaedia_org_covid-19-pneumonia-7_85703_0-dcm", np.clip((phantom.ct.array + 1000) / 8, 0, 255))):
        _write(phantom.ct, ct.astype(np.int16), root / "ct_scans" / f"{name}.nii")
        _write(phantom.ct, theirs, root / "lung_mask" / f"{name}.nii")
        _write(phantom.ct, (phantom.infection > 0).astype(np.uint8), root / "infection_mask" / f"{name}.nii")
        _write(phantom.ct, both, root / "lung_and_infection_mask" / f"{name}.nii")
        stale = "../input/covid19-ct-scans"  # the released metadata points at the authors' folders
        rows.append({"ct_scan": f"{stale}/ct_scans/{name}.nii", "lung_mask": f"{stale}/lung_mask/{name}.nii",
                     "infection_mask": f"{stale}/infection_mask/{name}.nii",
                     "lung_and_infection_mask": f"{stale}/lung_and_infection_mask/{name}.nii"})
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_covid19_ct_seg_converts_sides_infection_and_display_range(tmp_path, phantom):
    _covid19_tree(tmp_path, phantom)
    lungs = open_dataset(tmp_path, task="lungs")
    assert lungs.layout == "covid19_ct_seg" and len(lungs) == 2
    cases = list(lungs)
    for case in cases:
        np.testing.assert_array_equal(case.labels, phantom.lungs)  # 1 left / 2 right -> 1 right / 2 left
    assert cases[0].image.intensity == "hu"
    assert cases[1].image.intensity == "display"  # the 0-255 Radiopaedia-like case is marked
    infection = open_dataset(tmp_path, task="infection")
    assert any("GGO" in note for note in infection.notes)
    image, labels = next(iter(infection))
    np.testing.assert_array_equal(labels, (phantom.infection > 0).astype(np.uint8) * GGO)


def test_sides_follow_patient_geometry_not_array_order(tmp_path, phantom):
    flipped = phantom.reoriented((True, False, False))  # x stored the other way round (RAS-like)
    _covid19_tree(tmp_path, flipped)
    case = next(iter(open_dataset(tmp_path, "covid19_ct_seg", task="lungs")))
    np.testing.assert_array_equal(case.labels, flipped.lungs)


def test_medseg_slices_effusion_and_lung_masks(tmp_path, phantom):
    z = slice(4, 7)
    ct = Volume(phantom.ct.array[z].copy(), phantom.ct.spacing)
    mask = phantom.infection[z].copy()
    mask[0, 0:3, 0:3] = 3  # pleural effusion
    _write(ct, ct.array, tmp_path / "tr_im.nii.gz")
    _write(ct, mask, tmp_path / "tr_mask.nii.gz")
    _write(ct, (phantom.lungs[z] > 0).astype(np.uint8), tmp_path / "tr_lungmasks_updated.nii.gz")
    dataset = open_dataset(tmp_path, task="infection")
    assert dataset.layout == "medseg" and dataset.names == ["tr_im_000", "tr_im_001", "tr_im_002"]
    first = next(iter(dataset))
    assert first.image.shape == (1, 48, 48) and first.image.is_2d
    assert not np.any(first.labels[0, 0:3, 0:3])  # effusion dropped by default
    np.testing.assert_array_equal(first.labels[0, 3:], phantom.infection[4, 3:])
    kept = next(iter(open_dataset(tmp_path, task="infection", effusion="consolidation")))
    assert np.all(kept.labels[0, 0:3, 0:3] == CONSOLIDATION)
    lungs = list(open_dataset(tmp_path, task="lungs"))
    for offset, case in enumerate(lungs):
        np.testing.assert_array_equal(case.labels[0], phantom.lungs[4 + offset])  # split into sides


def test_nnunet_labels_mapped_by_name(tmp_path, phantom):
    theirs = np.zeros_like(phantom.lungs)
    theirs[phantom.lungs == LEFT_LUNG] = 1
    theirs[phantom.lungs == RIGHT_LUNG] = 2
    for name in ("lung_001", "lung_002"):
        _write(phantom.ct, phantom.ct.array, tmp_path / "imagesTr" / f"{name}_0000.nii.gz")
        _write(phantom.ct, theirs, tmp_path / "labelsTr" / f"{name}.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": {"background": 0, "left lung": 1, "right lung": 2}}))
    dataset = open_dataset(tmp_path, task="lungs")
    assert dataset.layout == "nnunet" and dataset.names == ["lung_001", "lung_002"]
    for image, labels in dataset:
        np.testing.assert_array_equal(labels, phantom.lungs)


def test_image_mask_folders_like_covid_semiseg(tmp_path, phantom):
    """images/*.jpg with infection/ (0/255) and ggo_consolidation/ (palette) mask folders."""
    for folder in ("images", "infection", "ggo_consolidation"):
        (tmp_path / folder).mkdir()
    for index in range(3):
        z = 4 + index
        gray = np.clip((phantom.ct.array[z].astype(float) + 1350) / 1500 * 255, 0, 255).astype(np.uint8)
        Image.fromarray(gray).save(tmp_path / "images" / f"{index}.jpg")
        Image.fromarray(((phantom.infection[z] > 0) * 255).astype(np.uint8)).save(tmp_path / "infection" / f"{index}.png")
        palette = Image.fromarray(phantom.infection[z].astype(np.uint8), mode="P")
        palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
        palette.save(tmp_path / "ggo_consolidation" / f"{index}.png")
    dataset = open_dataset(tmp_path, task="infection")
    assert dataset.layout == "folders" and len(dataset) == 3
    case = next(iter(dataset))
    assert case.image.intensity == "display" and case.image.shape == (1, 48, 48)
    np.testing.assert_array_equal(case.labels[0], phantom.infection[4])  # GGO/consolidation kept apart
    binary = next(iter(open_dataset(tmp_path, task="infection", mask_dir="infection")))
    np.testing.assert_array_equal(binary.labels[0], (phantom.infection[4] > 0).astype(np.uint8))


def test_slicer_seg_nrrd_beside_volume(tmp_path, phantom):
    sitk.WriteImage(phantom.ct.to_sitk(), str(tmp_path / "chest.nrrd"))
    write_segmentation(tmp_path / "chest.seg.nrrd", phantom.ct, {"lungs": phantom.lungs, "infection": phantom.infection})
    lungs = open_dataset(tmp_path, task="lungs")
    assert lungs.layout == "slicer" and lungs.names == ["chest"]
    np.testing.assert_array_equal(next(iter(lungs)).labels, phantom.lungs)
    infection = next(iter(open_dataset(tmp_path, task="infection")))
    np.testing.assert_array_equal(infection.labels, phantom.infection)


def test_unknown_layout_lists_the_supported_ones(tmp_path):
    (tmp_path / "random.txt").write_text("nothing here")
    with pytest.raises(InputError) as info:
        open_dataset(tmp_path)
    for layout in ("covid19_ct_seg", "medseg", "nnunet", "folders", "slicer"):
        assert layout in str(info.value)
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(InputError, match="Unknown dataset layout"):
        open_dataset(tmp_path, layout="kaggle")
    assert "phantom" in LAYOUTS
