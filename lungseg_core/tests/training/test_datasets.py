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
    array = np.asarray(array)
    sitk.WriteImage(volume.with_array(array.astype(np.uint8) if array.dtype == bool else array).to_sitk(), str(path))


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


# ------------------------------------------------------------------------------------------------------
# a wrong file, value or folder is refused, never silently used (docs/training.md, dataset layouts)
# ------------------------------------------------------------------------------------------------------
def _write_any(array, path):
    """An array of any shape (mismatched masks) on a plain grid."""
    _write(Volume(np.asarray(array)), array, path)


def _nnunet_tree(root, phantom, labels, names=None, cases=("lung_001",)):
    for name in cases:
        _write(phantom.ct, phantom.ct.array, root / "imagesTr" / f"{name}_0000.nii.gz")
        _write(phantom.ct, labels, root / "labelsTr" / f"{name}.nii.gz")
    if names is not None:
        (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": names}))


def _theirs_with_infection(phantom):
    """1 left / 2 right lung, 3 infection (inside the lungs), as in a typical nnU-Net lung task."""
    theirs = np.zeros_like(phantom.lungs)
    theirs[phantom.lungs == LEFT_LUNG] = 1
    theirs[phantom.lungs == RIGHT_LUNG] = 2
    theirs[phantom.infection > 0] = 3
    return theirs


def test_covid19_missing_mask_is_refused_never_replaced_by_another_folders_file(tmp_path, phantom):
    _covid19_tree(tmp_path, phantom)
    (tmp_path / "lung_mask" / "coronacases_org_001.nii").unlink()  # infection_mask/ still has that file name
    with pytest.raises(InputError, match="lung_mask/coronacases_org_001.nii' listed in metadata.csv is not below"):
        open_dataset(tmp_path, task="lungs")


def test_covid19_zenodo_folder_names_match_in_any_case_and_are_noted(tmp_path, phantom):
    """Zenodo release: Lung_Mask/, Infection_Mask/ and the CTs in their own folder, all with one file name."""
    lung_mask = np.choose(phantom.lungs, [0, 2, 1]).astype(np.uint8)  # theirs: 1 left, 2 right
    for folder, array in (("COVID-19-CT-Seg_20cases", phantom.ct.array), ("Lung_Mask", lung_mask),
                          ("Infection_Mask", (phantom.infection > 0).astype(np.uint8))):
        _write(phantom.ct, array, tmp_path / folder / "coronacases_001.nii.gz")
    (tmp_path / "metadata.csv").write_text("ct_scan,lung_mask,infection_mask\n"
                                           "ct_scans/coronacases_001.nii.gz,lung_mask/coronacases_001.nii.gz,"
                                           "infection_mask/coronacases_001.nii.gz\n", encoding="utf-8-sig")  # Excel's BOM
    dataset = open_dataset(tmp_path, task="infection")
    assert any("'lung_mask/' read as 'Lung_Mask/'" in note for note in dataset.notes)
    assert any("read from 'COVID-19-CT-Seg_20cases/'" in note for note in dataset.notes)
    case = next(iter(dataset))
    assert case.image.array.min() < -500  # the CT, not a mask
    np.testing.assert_array_equal(case.labels, (phantom.infection > 0) * GGO)
    np.testing.assert_array_equal(case.lungs, phantom.lungs)


def test_covid19_metadata_naming_the_ct_as_a_mask_is_refused(tmp_path, phantom):
    _write(phantom.ct, phantom.ct.array, tmp_path / "ct_scans" / "a.nii")
    (tmp_path / "metadata.csv").write_text("ct_scan,lung_mask\nct_scans/a.nii,ct_scans/a.nii\n")
    with pytest.raises(InputError, match="as both lung_mask and ct_scan"):
        open_dataset(tmp_path, task="lungs")


def test_covid19_shape_mismatch_names_the_mask_file(tmp_path, phantom):
    _covid19_tree(tmp_path, phantom)
    _write_any(np.zeros((4, 48, 48), np.uint8), tmp_path / "lung_mask" / "coronacases_org_001.nii")
    with pytest.raises(InputError, match=r"Mask 'lung_mask/coronacases_org_001.nii' has shape \(4, 48, 48\) "
                                         r"but its image 'coronacases_org_001' has \(12, 48, 48\)"):
        next(iter(open_dataset(tmp_path, task="lungs")))


def test_medseg_mask_stack_of_another_depth_names_both_stacks(tmp_path, phantom):
    _write_any(phantom.ct.array[:6], tmp_path / "tr_im.nii.gz")
    _write_any(phantom.infection[:4], tmp_path / "tr_mask.nii.gz")
    with pytest.raises(InputError, match="'tr_mask.nii.gz' holds 4 slice.s. of 48x48 but 'tr_im.nii.gz' holds 6"):
        open_dataset(tmp_path, task="infection")


def test_nnunet_lungs_task_counts_infection_as_lung(tmp_path, phantom):
    _nnunet_tree(tmp_path, phantom, _theirs_with_infection(phantom),
                 {"background": 0, "left lung": 1, "right lung": 2, "infection": 3})
    case = next(iter(open_dataset(tmp_path, task="lungs")))
    np.testing.assert_array_equal(case.labels, phantom.lungs)  # infected lung stays lung, on its own side
    infection = next(iter(open_dataset(tmp_path, task="infection")))
    np.testing.assert_array_equal(infection.labels, (phantom.infection > 0) * GGO)
    np.testing.assert_array_equal(infection.lungs, phantom.lungs)  # kept for crop_to_lungs


def test_nnunet_values_dataset_json_does_not_name_are_refused(tmp_path, phantom):
    labels = _theirs_with_infection(phantom)
    labels[labels == 1] = 7
    _nnunet_tree(tmp_path, phantom, labels, {"background": 0, "left lung": 1, "right lung": 2, "infection": 3})
    with pytest.raises(InputError, match=r"'labelsTr/lung_001.nii.gz' holds value\(s\) 7, which dataset.json does not define"):
        next(iter(open_dataset(tmp_path, task="lungs")))
    with pytest.raises(InputError, match="7, which options.label_map does not define"):
        next(iter(open_dataset(tmp_path, task="lungs", label_map={"2": 1, "3": 1})))
    fixed = next(iter(open_dataset(tmp_path, task="lungs", label_map={"2": 1, "3": 1, "7": 2})))
    np.testing.assert_array_equal(fixed.labels > 0, phantom.lungs > 0)


def test_nnunet_dataset_json_without_task_labels_is_refused(tmp_path, phantom):
    _nnunet_tree(tmp_path, phantom, _theirs_with_infection(phantom), {"background": 0, "L": 1, "R": 2, "infection": 3})
    with pytest.raises(InputError, match="names no lungs label .labels: 0 background, 1 L, 2 R, 3 infection"):
        open_dataset(tmp_path, task="lungs")


def test_nnunet_missing_folders_and_labels(tmp_path, phantom):
    (tmp_path / "labelsTr").mkdir()
    with pytest.raises(InputError, match="has no imagesTr/ folder") as info:
        open_dataset(tmp_path, "nnunet")
    assert "labelsTr/CASE.nii.gz" in str(info.value)
    _nnunet_tree(tmp_path, phantom, np.minimum(_theirs_with_infection(phantom), 2), cases=("lung_001", "lung_002"))
    (tmp_path / "labelsTr" / "lung_002.nii.gz").unlink()
    dataset = open_dataset(tmp_path, "nnunet")
    assert dataset.names == ["lung_001"]
    assert any("1 image(s) without labels skipped" in n and "lung_002_0000.nii.gz" in n for n in dataset.notes)


def _folders_tree(root, phantom, masks: dict, cases=("a",)):
    for name in cases:
        _write(phantom.ct, phantom.ct.array, root / "images" / f"{name}.nii.gz")
        for folder, array in masks.items():
            _write(phantom.ct, array, root / folder / f"{name}.nii.gz")


def test_folders_binary_255_volumes_are_any_infection_other_values_refused(tmp_path, phantom):
    medseg_like = phantom.infection.copy()
    medseg_like[0, :3, :3] = 3  # pleural effusion
    _folders_tree(tmp_path, phantom, {"infection": (phantom.infection > 0) * 255, "ggo_consolidation": medseg_like})
    binary = next(iter(open_dataset(tmp_path, task="infection", mask_dir="infection")))
    np.testing.assert_array_equal(binary.labels, (phantom.infection > 0) * GGO)  # not consolidation
    with pytest.raises(InputError, match=r"holds value\(s\) 3, .*MedSeg masks use 3 for pleural effusion"):
        next(iter(open_dataset(tmp_path, task="infection")))
    dropped = next(iter(open_dataset(tmp_path, task="infection", label_map={"1": 1, "2": 2, "3": 0})))
    np.testing.assert_array_equal(dropped.labels, phantom.infection)


def test_folders_lungs_task_uses_only_a_lung_mask_folder(tmp_path, phantom):
    _folders_tree(tmp_path, phantom, {"ggo_consolidation": phantom.infection, "infection": phantom.infection > 0})
    with pytest.raises(InputError, match="no lung mask folder .*found ggo_consolidation/, infection/"):
        open_dataset(tmp_path, task="lungs")
    _folders_tree(tmp_path, phantom, {"lungs": phantom.lungs > 0}, cases=("a", "b"))
    (tmp_path / "ggo_consolidation" / "b.nii.gz").write_bytes((tmp_path / "ggo_consolidation" / "a.nii.gz").read_bytes())
    lungs = open_dataset(tmp_path, task="lungs")
    assert "lung masks from lungs/" in lungs.notes
    infection = open_dataset(tmp_path, task="infection")
    assert infection.notes[:2] == ["infection masks from ggo_consolidation/", "lung masks from lungs/ (for crop_to_lungs)"]
    np.testing.assert_array_equal(next(iter(infection)).lungs, phantom.lungs)


def test_folders_missing_images_folder_and_masks(tmp_path, phantom):
    (tmp_path / "lungs").mkdir()
    with pytest.raises(InputError, match="has no images/ folder"):
        open_dataset(tmp_path, "folders")
    _folders_tree(tmp_path, phantom, {"lungs": phantom.lungs}, cases=("a", "b"))
    (tmp_path / "lungs" / "b.nii.gz").unlink()
    dataset = open_dataset(tmp_path, "folders")
    assert any("1 image(s) without labels skipped (no file of the same name in lungs/): b.nii.gz" in n for n in dataset.notes)


def test_folders_wrong_slice_count_is_not_called_transposed(tmp_path, phantom):
    _folders_tree(tmp_path, phantom, {"lungs": phantom.lungs})
    _write_any(phantom.lungs[:5], tmp_path / "lungs" / "a.nii.gz")
    with pytest.raises(InputError, match=r"Mask 'lungs/a.nii.gz' has shape \(5, 48, 48\) but its image 'a' has \(12, 48, 48\)\. give"):
        next(iter(open_dataset(tmp_path, task="lungs")))
    _write_any(np.zeros((2, 4, 6), np.int16), tmp_path / "images" / "a.nii.gz")
    _write_any(np.zeros((2, 6, 4), np.uint8), tmp_path / "lungs" / "a.nii.gz")
    with pytest.raises(InputError, match="rows and columns are swapped"):
        next(iter(open_dataset(tmp_path, task="lungs")))


def _renamed_segments(path, names):
    """A Slicer segmentation whose segments carry Slicer's default names and no terminology."""
    import slicerio

    segmentation = slicerio.read_segmentation(str(path))
    for segment, name in zip(segmentation["segments"], names):
        segment["name"] = name
        segment.pop("terminology", None)
    slicerio.write_segmentation(str(path), segmentation)


def test_slicer_segments_that_match_nothing_are_refused_and_label_map_maps_them(tmp_path, phantom):
    sitk.WriteImage(phantom.ct.to_sitk(), str(tmp_path / "chest.nrrd"))
    write_segmentation(tmp_path / "chest.seg.nrrd", phantom.ct, {"lungs": phantom.lungs})
    _renamed_segments(tmp_path / "chest.seg.nrrd", ["Segment_1", "Segment_2"])
    with pytest.raises(InputError, match="'chest.seg.nrrd' has segments Segment_1, Segment_2; none is named .*options.label_map"):
        open_dataset(tmp_path, task="lungs")
    with pytest.raises(InputError, match="none is named GGO"):
        open_dataset(tmp_path, task="infection")
    with pytest.raises(InputError, match="names segment.s. Segment_3, which no .seg.nrrd has"):
        open_dataset(tmp_path, task="lungs", label_map={"Segment_1": 1, "Segment_3": 2})
    mapped = next(iter(open_dataset(tmp_path, task="lungs", label_map={"Segment_1": 1, "Segment_2": 2})))
    np.testing.assert_array_equal(mapped.labels, phantom.lungs)


def test_slicer_infection_task_keeps_lung_segments_for_cropping(tmp_path, phantom):
    sitk.WriteImage(phantom.ct.to_sitk(), str(tmp_path / "chest.nrrd"))
    write_segmentation(tmp_path / "chest.seg.nrrd", phantom.ct, {"lungs": phantom.lungs, "infection": phantom.infection})
    case = next(iter(open_dataset(tmp_path, task="infection")))
    np.testing.assert_array_equal(case.lungs, phantom.lungs)


@pytest.mark.parametrize("layout, options, valid", [
    ("medseg", {"efusion": "consolidation"}, "effusion"),
    ("nnunet", {"labelmap": {}}, "label_map, sides_known, patient_pattern"),
    ("phantom", {"case": 2}, "cases, shape, seed"),
])
def test_unknown_reader_options_are_refused_with_the_known_ones(tmp_path, layout, options, valid):
    with pytest.raises(InputError, match=f"Unknown option.s. {next(iter(options))} for layout '{layout}'. valid options are: {valid}"):
        open_dataset(tmp_path, layout, **options)


def test_label_map_targets_are_checked(tmp_path, phantom):
    _folders_tree(tmp_path, phantom, {"lungs": phantom.lungs})
    with pytest.raises(InputError, match="entry '1': 5 is not a value and a lungs label"):
        open_dataset(tmp_path, task="lungs", label_map={"1": 5})


def test_covid19_metadata_saved_by_excel_with_a_bom_is_read(tmp_path, phantom):
    _covid19_tree(tmp_path, phantom)
    text = (tmp_path / "metadata.csv").read_text(encoding="utf-8")
    (tmp_path / "metadata.csv").write_text(text, encoding="utf-8-sig")
    assert len(open_dataset(tmp_path, "covid19_ct_seg", task="lungs")) == 2
