"""Slice sampling, non-informative slice removal and patient-level splits."""

import numpy as np
import pytest

from lungseg_core.errors import InputError
from lungseg_core.evaluation.crossval import held_out_cases
from lungseg_core.io.volume import reorder_axes
from lungseg_core.preprocessing.slices import SliceSpec
from lungseg_core.synthetic import make_chest_phantom
from lungseg_core.training.config import TrainConfig
from lungseg_core.training.sampling import (SliceDataset, build_training_data, case_to_stack, kfold_split,
                                            patient_split, reduce_labels, select_slices)


def test_noninformative_slices_dropped_but_some_negatives_kept():
    labels = np.zeros((20, 4, 4), np.uint8)
    labels[5:12, 1:3, 1:3] = 1
    rng = np.random.default_rng(0)
    assert list(select_slices(labels, True, 0.0, 0, rng)) == list(range(5, 12))
    assert list(select_slices(labels, False, 0.0, 0, rng)) == list(range(20))
    with_negatives = select_slices(labels, True, 1.0, 0, rng)
    assert len(with_negatives) == 20
    even = select_slices(labels, True, 0.0, 3, rng)
    assert list(even) == [5, 8, 11]


def test_patient_split_never_puts_one_patient_on_both_sides():
    patients = [f"p{i // 3}" for i in range(30)]  # 10 patients, 3 cases (e.g. scans or slices) each
    train, val = patient_split(patients, 0.3, seed=4)
    assert set(train).isdisjoint(val) and sorted(train + val) == list(range(30))
    assert {patients[i] for i in train}.isdisjoint({patients[i] for i in val})
    assert len({patients[i] for i in val}) == 3
    seen_val = set()
    for fold in range(5):
        train, val = kfold_split(patients, 5, fold, seed=1)
        assert {patients[i] for i in train}.isdisjoint({patients[i] for i in val})
        seen_val |= {patients[i] for i in val}
    assert seen_val == set(patients)  # every patient is validated exactly once over the folds
    with pytest.raises(InputError, match="needs at least 5 patients"):
        kfold_split(["a", "b"], 5, 0)


def test_case_to_stack_matches_the_inference_preprocessing():
    phantom = make_chest_phantom(shape=(10, 48, 48), seed=0)
    spec = SliceSpec(size=32, context=1)
    stack = case_to_stack(phantom.ct, phantom.lungs, spec, "p", task="lungs", num_classes=3)
    informative = np.flatnonzero(phantom.lungs.reshape(10, -1).any(1))
    assert stack.images.shape == (informative.size, 3, 32, 32) and stack.images.dtype == np.float16
    assert stack.labels.dtype == np.uint8 and set(np.unique(stack.labels)) == {0, 1, 2}
    binary = case_to_stack(phantom.ct, phantom.lungs, spec, "p", task="lungs", num_classes=2)
    assert set(np.unique(binary.labels)) == {0, 1}
    with pytest.raises(InputError, match="num_classes"):
        reduce_labels(np.array([0, 3]), "lungs", 3)


def test_a_case_stored_in_another_axis_order_gives_the_same_training_slices():
    """Training cuts the axial slices of a sagittal- or coronal-stored case, as inference does."""
    phantom = make_chest_phantom(shape=(10, 48, 40), seed=0)
    spec = SliceSpec(size=32, context=1)
    expected = case_to_stack(phantom.ct, phantom.lungs, spec, "p", task="lungs", num_classes=3, max_slices=6)
    for axes, flips in (((2, 1, 0), (False, False, False)), ((1, 2, 0), (True, False, True))):
        stored = reorder_axes(phantom.ct, axes, flips)
        lungs = reorder_axes(phantom.ct.with_array(phantom.lungs), axes, flips).array
        stack = case_to_stack(stored, lungs, spec, "p", task="lungs", num_classes=3, max_slices=6)
        np.testing.assert_array_equal(stack.images, expected.images)
        np.testing.assert_array_equal(stack.labels, expected.labels)


def test_training_data_split_by_patient_from_config():
    config = TrainConfig.from_dict({
        "name": "t", "task": "lungs", "architecture": "unet", "num_classes": 3,
        "data": [{"layout": "phantom", "options": {"cases": 5, "shape": [8, 32, 32]}}],
        "slice_spec": {"size": 32, "context": 0}, "val_fraction": 0.4, "max_slices_per_case": 2,
    })
    data = build_training_data(config)
    assert set(data.train_cases).isdisjoint(data.val_cases)
    assert len(data.train_cases) == 3 and len(data.val_cases) == 2
    assert len(data.train) == 6 and len(data.val) == 4
    image, labels = SliceDataset(data.train)[0]
    assert image.shape == (1, 32, 32) and labels.dtype.is_floating_point is False


def test_a_cross_validation_fold_never_reads_its_test_cases():
    config = TrainConfig.from_dict({
        "name": "t", "task": "lungs", "architecture": "unet", "num_classes": 3,
        "data": [{"layout": "phantom", "options": {"cases": 10, "shape": [8, 32, 32]}}],
        "slice_spec": {"size": 32, "context": 0}, "val_fraction": 0.25, "max_slices_per_case": 1,
        "folds": 5, "fold": 2,
    })
    messages = []
    data = build_training_data(config, messages.append)
    test = {e.case.name for e in held_out_cases(config, 2, 5)}
    assert len(test) == 2
    # the epoch is picked on patients of the training folds, not on the fold's test cases
    assert test.isdisjoint(data.train_cases) and test.isdisjoint(data.val_cases)
    assert len(data.val_cases) == 2 and len(data.train_cases) == 6
    assert any("2 test case(s) held out" in m for m in messages)


def test_split_seed_keeps_the_folds_when_the_training_seed_changes():
    def test_cases(**seeds):
        config = TrainConfig.from_dict({
            "name": "t", "task": "lungs", "architecture": "unet", "num_classes": 3,
            "data": [{"layout": "phantom", "options": {"cases": 10, "shape": [8, 32, 32]}}],
            "slice_spec": {"size": 32, "context": 0}, "folds": 5, **seeds,
        })
        return [sorted(e.case.name for e in held_out_cases(config, fold, 5)) for fold in range(5)]

    assert test_cases(seed=1) != test_cases(seed=0)  # by default the seed also draws the folds
    assert test_cases(seed=1, split_seed=0) == test_cases(seed=0)
    assert test_cases(seed=0, split_seed=1) == test_cases(seed=1)
    with pytest.raises(InputError, match="split_seed"):
        TrainConfig.from_dict({"name": "t", "task": "lungs", "architecture": "unet", "split_seed": -1,
                               "data": [{"layout": "phantom"}]})


def test_lesion_hosts_give_infection_labels():
    config = TrainConfig.from_dict({
        "name": "t", "task": "infection", "architecture": "unet", "num_classes": 3,
        "data": [{"layout": "phantom", "labels": "lungs", "options": {"cases": 2, "shape": [8, 32, 32]}}],
        "slice_spec": {"size": 32, "context": 0}, "val_fraction": 0.5,
        "synthetic_lesions": {"copies": 2, "count": [3, 3], "diameter_mm": [30, 60]},
    })
    data = build_training_data(config)
    assert len(data.train_cases) == 2 and all("+lesions" in n for n in data.train_cases)
    assert data.train.labels.max() >= 1 and data.train.labels.max() <= 2


def _phantom_config(source: dict, **extra) -> TrainConfig:
    return TrainConfig.from_dict({
        "name": "t", "task": "lungs", "architecture": "unet", "num_classes": 2,
        "data": [{"layout": "phantom", "role": "train", "options": {"cases": 1, "shape": [8, 48, 48]}, **source}],
        "slice_spec": {"size": 32, "context": 0}, **extra,
    })


def test_a_source_can_be_shown_transposed():
    plain = build_training_data(_phantom_config({})).train
    turned = build_training_data(_phantom_config({"transpose": True})).train
    assert not np.array_equal(turned.labels, plain.labels)  # the phantom is not symmetric about its diagonal
    np.testing.assert_array_equal(turned.labels, plain.labels.swapaxes(-1, -2))
    np.testing.assert_array_equal(turned.images, plain.images.swapaxes(-1, -2))


def test_a_source_can_be_cut_to_its_lungs_whatever_the_config_says():
    def lung_share(source: dict, **extra) -> float:
        return float(np.mean(build_training_data(_phantom_config(source, **extra)).train.labels > 0))

    whole = lung_share({})
    assert lung_share({"crop_to_lungs": True}) > 1.1 * whole  # lungs fill more of a cut slice
    assert lung_share({}, crop_to_lungs=True) == lung_share({"crop_to_lungs": True})
    assert lung_share({"crop_to_lungs": False}, crop_to_lungs=True) == whole


def test_lung_lesion_copies_reach_validation_with_unchanged_lung_labels():
    config = TrainConfig.from_dict({
        "name": "t", "task": "lungs", "architecture": "unet", "num_classes": 2,
        "data": [{"layout": "phantom", "role": "train", "options": {"cases": 1, "shape": [8, 32, 32], "seed": 1}},
                 {"layout": "phantom", "role": "val", "options": {"cases": 1, "shape": [8, 32, 32], "seed": 2}}],
        "slice_spec": {"size": 32, "context": 0},
        "synthetic_lesions": {"copies": 2, "count": [2, 2], "diameter_mm": [30, 60], "placement": "subpleural"},
    })
    data = build_training_data(config)
    for names in (data.train_cases, data.val_cases):
        assert sum("+lesions" in n for n in names) == 2 and sum("+lesions" not in n for n in names) == 1
    plain = data.val.labels[: len(data.val) // 3]
    np.testing.assert_array_equal(data.val.labels[len(data.val) // 3: 2 * len(data.val) // 3], plain)


def test_combine_with_classical_needs_a_one_class_lung_model():
    base = {"name": "t", "architecture": "unet", "data": [{"layout": "phantom"}], "combine_with_classical": True}
    with pytest.raises(InputError, match="combine_with_classical"):
        TrainConfig.from_dict({**base, "task": "infection", "num_classes": 3})
    assert TrainConfig.from_dict({**base, "task": "lungs", "num_classes": 2}).combine_with_classical


def _slice_folder(root, phantom, masks: dict[str, np.ndarray], z: int = 4):
    """A folders-layout source of one 2D slice image (display 0-255, like COVID-SemiSeg) and its masks."""
    from PIL import Image

    for folder in ("images", *masks):
        (root / folder).mkdir(parents=True)
    Image.fromarray(np.clip((phantom.ct.array[z] + 1350) / 1500 * 255, 0, 255).astype(np.uint8)).save(root / "images" / "s.png")
    for folder, mask in masks.items():
        Image.fromarray((mask[z] > 0).astype(np.uint8) * 255).save(root / folder / "s.png")


def test_crop_to_lungs_is_refused_for_a_source_without_lung_labels(tmp_path):
    phantom = make_chest_phantom(shape=(8, 48, 48), seed=0)
    _slice_folder(tmp_path / "no_lungs", phantom, {"infection": phantom.infection})
    _slice_folder(tmp_path / "with_lungs", phantom, {"infection": phantom.infection, "lungs": phantom.lungs})

    def config(root):
        return TrainConfig.from_dict({
            "name": "t", "task": "infection", "architecture": "unet", "num_classes": 2, "crop_to_lungs": True,
            "data": [{"root": str(root), "layout": "folders", "role": "train"}], "slice_spec": {"size": 32, "context": 0}})

    with pytest.raises(InputError, match="crop_to_lungs is set for data.0., but its case 's' has no lung labels"):
        build_training_data(config(tmp_path / "no_lungs"))
    messages = []
    assert len(build_training_data(config(tmp_path / "with_lungs"), messages.append).train) == 1
    assert "data[0]: lung masks from lungs/ (for crop_to_lungs)" in messages  # the reader's choices are said


def test_a_lesion_host_not_in_hu_is_skipped_with_a_note(tmp_path):
    phantom = make_chest_phantom(shape=(8, 48, 48), seed=0)
    _slice_folder(tmp_path, phantom, {"lungs": phantom.lungs})  # 0-255 slice: no HU to insert lesions into
    config = TrainConfig.from_dict({
        "name": "t", "task": "infection", "architecture": "unet", "num_classes": 3, "val_fraction": 0,
        "data": [{"layout": "phantom", "labels": "lungs", "role": "train", "options": {"cases": 1, "shape": [8, 32, 32]}},
                 {"root": str(tmp_path), "layout": "folders", "labels": "lungs", "role": "train"}],
        "slice_spec": {"size": 32, "context": 0},
        "synthetic_lesions": {"copies": 1, "count": [2, 2], "diameter_mm": [20, 30]},
    })
    messages = []
    data = build_training_data(config, messages.append)
    assert data.train_cases == ["phantom_000+lesions0"]
    note = "1 case(s) with display intensities (0-255), not HU, skipped as lesion hosts: synthetic lesions need HU (s)"
    assert note in messages and note in data.notes


def test_both_no_held_out_validation_notes_are_logged(tmp_path):
    """The Slicer panel warns on the log lines holding NO_HELD_OUT_NOTES: each note must reach ``say``, not only
    summary.json's notes."""
    from lungseg_core.training.config import NO_INFORMATIVE_VALIDATION, NO_VALIDATION_PATIENT

    phantom = make_chest_phantom(shape=(8, 48, 48), seed=0)
    _slice_folder(tmp_path / "empty", phantom, {"lungs": np.zeros_like(phantom.lungs)})  # no lung on the slice
    train_source = {"layout": "phantom", "role": "train", "options": {"cases": 1, "shape": [8, 32, 32]}}

    def logged(*extra_sources, **extra) -> list[str]:
        messages = []
        build_training_data(TrainConfig.from_dict({
            "name": "t", "task": "lungs", "architecture": "unet", "num_classes": 2, "max_slices_per_case": 2,
            "data": [train_source, *extra_sources], "slice_spec": {"size": 32, "context": 0}, **extra}),
            messages.append)
        return messages

    assert NO_VALIDATION_PATIENT in logged(val_fraction=0)
    empty_validation = {"root": str(tmp_path / "empty"), "layout": "folders", "role": "val"}
    assert NO_INFORMATIVE_VALIDATION in logged(empty_validation)
