"""The Segmenter: any model in, labels out; determinism; 2D/3D checks; devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lungseg_core.errors import InputError, ModelError
from lungseg_core.inference import Cancelled, Segmenter
from lungseg_core.inference.device import resolve_device
from lungseg_core.io.volume import Volume, reorder_axes
from lungseg_core.models import build_model, zoo
from lungseg_core.tests.conftest import dice
from lungseg_core.tests.models.test_zoo import save_tiny, tiny_card


def save_tiny_3d(folder, patch_size: tuple[int, int, int]):
    """An untrained small 3D U-Net saved as a model package; its card's path."""
    card = tiny_card(name="tiny3d")
    card.update(architecture="unet3d", architecture_kwargs={"base_filters": 4}, in_channels=1, spatial_dims=3,
                patch_size=list(patch_size))
    torch.manual_seed(0)
    return zoo.save_model_package(build_model("unet3d", in_channels=1, num_classes=3, base_filters=4), card, folder)


def test_threshold_segmenter_labels_both_lungs(phantom):
    labels = Segmenter("threshold", "lungs").predict(phantom.ct)
    assert labels.shape == phantom.ct.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2}


def test_network_segmenter_runs_in_input_grid_and_is_deterministic(tmp_path, phantom):
    card_path, _ = save_tiny(tmp_path, context=1)
    segmenter = Segmenter(str(card_path), "lungs", device="cpu")
    first = segmenter.predict(phantom.ct)
    second = Segmenter(str(card_path), "lungs", device="cpu").predict(phantom.ct)
    assert first.shape == phantom.ct.shape
    assert set(np.unique(first)) <= {0, 1, 2}
    np.testing.assert_array_equal(first, second)
    assert segmenter.provenance()["sha256"] == zoo.sha256_file(tmp_path / "tiny.safetensors")


def test_sizes_not_divisible_by_the_network_are_padded(tmp_path, phantom):
    card_path, _ = save_tiny(tmp_path, size=36)  # 36 is not a multiple of the network's divisor
    labels = Segmenter(str(card_path), "lungs", device="cpu").predict(phantom.ct)
    assert labels.shape == phantom.ct.shape


def test_infection_needs_lungs_and_stays_inside_them(phantom):
    segmenter = Segmenter("threshold", "infection")
    with pytest.raises(InputError, match="lung labels"):
        segmenter.predict(phantom.ct)
    infection = segmenter.predict(phantom.ct, lungs=phantom.lungs)
    assert not np.any((infection > 0) & (phantom.lungs == 0))


def test_3d_model_refuses_2d_slice(tmp_path):
    card_path = save_tiny_3d(tmp_path, (16, 32, 32))
    slice_2d = Volume(np.full((1, 64, 64), 100.0), intensity="display", is_2d=True)
    with pytest.raises(InputError, match="needs a 3D volume"):
        Segmenter(str(card_path), "lungs").predict(slice_2d)


def test_3d_model_predicts_whole_volume_by_patches(tmp_path, phantom):
    card_path = save_tiny_3d(tmp_path, (16, 48, 48))
    labels = Segmenter(str(card_path), "lungs").predict(phantom.ct)
    assert labels.shape == phantom.ct.shape


def test_cancel_before_start(phantom, tmp_path):
    import threading

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        Segmenter("threshold", "lungs").predict(phantom.ct, cancel=cancel)


def test_unknown_task_and_device():
    with pytest.raises(InputError, match="Unknown task"):
        Segmenter("threshold", "heart")
    with pytest.raises(ModelError, match="Unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="--device cpu"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_network_combined_with_classical_only_adds_dense_lung(tmp_path, phantom):
    from lungseg_core.postprocessing.lungs import DENSE_LUNG_MIN_HU

    card = tiny_card(name="tinyfused", num_classes=2)
    card.update(combine_with_classical=True, labels={"1": "Lung"})
    torch.manual_seed(0)
    network = build_model("resunet", in_channels=1, num_classes=2, base_filters=4)
    with torch.no_grad():  # a network that calls everything lung: only the guards decide what is added
        network.head.weight.zero_()
        network.head.bias.copy_(torch.tensor([-5.0, 5.0]))
    card_path = zoo.save_model_package(network, card, tmp_path)
    classical = Segmenter("threshold", "lungs").predict(phantom.ct)
    fused = Segmenter(str(card_path), "lungs", device="cpu").predict(phantom.ct)
    np.testing.assert_array_equal(fused[classical > 0], classical[classical > 0])
    added = (fused > 0) & (classical == 0)
    air = phantom.ct.array < DENSE_LUNG_MIN_HU
    regions, _ = ndimage.label(air)
    outside = np.isin(regions, np.unique(np.concatenate([regions[:, 0].ravel(), regions[:, :, 0].ravel()])))
    assert added.any() and (phantom.ct.array[added] >= DENSE_LUNG_MIN_HU).mean() > 0.95
    assert not (added & air & outside & (regions > 0)).any()  # air around the body is never lung


def test_combined_network_sees_only_the_planes_of_the_classical_lungs(tmp_path, phantom, monkeypatch):
    from dataclasses import replace

    from lungseg_core.inference import segmenter as segmenter_module

    chest = phantom.ct.array
    abdomen = np.where(ndimage.binary_fill_holes(chest[len(chest) // 2] > -500), 40, -1000).astype(chest.dtype)
    volume = replace(phantom.ct, array=np.concatenate([np.repeat(abdomen[None], 12, axis=0), chest]))
    lung_planes = np.flatnonzero(Segmenter("threshold", "lungs").predict(volume).any(axis=(1, 2)))
    seen = {}

    def network_spy(network, volume, spec, device, batch_size, progress, cancel, kind=None, mirror=False, planes=None):
        seen["planes"] = planes
        return np.zeros(volume.shape, np.uint8), lambda regions, count: np.zeros(count)

    monkeypatch.setattr(segmenter_module, "predict_labels_and_region_probability", network_spy)
    card = tiny_card(name="tinyfused", num_classes=2)
    card.update(combine_with_classical=True, labels={"1": "Lung"})
    card_path = zoo.save_model_package(build_model("resunet", in_channels=1, num_classes=2, base_filters=4), card, tmp_path)
    Segmenter(str(card_path), "lungs", device="cpu").predict(volume)
    margin = int(np.ceil(segmenter_module.COMBINED_PLANE_MARGIN_MM / volume.spacing[2]))
    assert lung_planes[0] >= 12 and volume.spacing[2] >= segmenter_module.COMBINED_PLANE_STEP_MM  # no plane skipped
    expected = np.arange(lung_planes[0] - margin, min(lung_planes[-1] + margin + 1, len(volume.array)))
    np.testing.assert_array_equal(seen["planes"], expected)


def test_the_lung_stage_reports_progress_before_during_and_after_its_network(tmp_path, phantom, monkeypatch):
    """The Slicer progress bar sat at its start for the whole lung stage: the classical part and the fusion
    reported nothing, and the network's own fractions started the stage over."""
    from lungseg_core.inference import segmenter as segmenter_module

    def network_spy(network, volume, spec, device, batch_size, progress, cancel, kind=None, mirror=False, planes=None):
        progress(0.5, "network inference")
        progress(1.0, "network inference")
        return np.zeros(volume.shape, np.uint8), lambda regions, count: np.zeros(count)

    monkeypatch.setattr(segmenter_module, "predict_labels_and_region_probability", network_spy)
    card = tiny_card(name="tinyfused", num_classes=2)
    card.update(combine_with_classical=True, labels={"1": "Lung"})
    card_path = zoo.save_model_package(build_model("resunet", in_channels=1, num_classes=2, base_filters=4), card, tmp_path)
    reported = []
    Segmenter(str(card_path), "lungs", device="cpu").predict(phantom.ct, progress=lambda f, m: reported.append((f, m)))
    fractions = [f for f, _ in reported]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and 0.85 <= fractions[-1] < 1.0
    assert reported[0][1] == "classical lungs" and reported[-1][1] == "adding the network's dense lung"
    assert {round(f, 2) for f, m in reported if m == "network inference"} == {0.6, 0.9}  # inside its share

    classical = []
    Segmenter("threshold", "lungs").predict(phantom.ct, progress=lambda f, m: classical.append(f))
    assert classical == [0.0, 1.0]


@pytest.mark.parametrize("task", ["lungs", "infection"])
def test_a_network_trained_on_lung_crops_sees_the_ct_cut_to_its_lungs(tmp_path, phantom, monkeypatch, task):
    """Seed 5 trains on lung-cropped slices; shown the whole body instead, its lungs come out at another scale
    (CTChest4: Dice 0.00 / 0.38 whole, 0.76 / 0.72 cut to the lungs, docs/models.md)."""
    from lungseg_core.inference import segmenter as segmenter_module
    from lungseg_core.preprocessing.cropping import lung_bounding_box

    seen = []

    def network_spy(network, volume, spec, device, batch_size, progress, cancel, kind=None, mirror=False, planes=None):
        seen.append(volume.shape)
        return np.ones(volume.shape, np.uint8)  # "lung/infection everywhere it looks"

    monkeypatch.setattr(segmenter_module, "predict_labels", network_spy)
    lungs = Segmenter("threshold", "lungs").predict(phantom.ct)
    box = lung_bounding_box(lungs, phantom.ct)
    assert box != tuple(slice(0, n) for n in phantom.ct.shape)  # the lungs' box is smaller than the CT
    for cropped in (False, True):
        card = tiny_card(name=f"crop{cropped}", task=task)
        if cropped:
            card["crop_to_lungs"] = True
        card_path = zoo.save_model_package(build_model("resunet", in_channels=1, num_classes=3, base_filters=4), card,
                                           tmp_path / str(cropped))
        segmenter = Segmenter(str(card_path), task, device="cpu")
        labels = segmenter.predict(phantom.ct, lungs=lungs if task == "infection" else None)
        seen_shape = seen.pop()
        assert seen_shape == (tuple(s.stop - s.start for s in box) if cropped else phantom.ct.shape)
        if task == "infection":
            inside = np.zeros(lungs.shape, bool)
            inside[box] = True
            assert labels.any() and not labels[~inside].any()  # pasted back where the box lies


def test_every_nth_plane_keeps_the_last():
    from lungseg_core.inference.segmenter import every_nth

    np.testing.assert_array_equal(every_nth(np.arange(3, 13), 4), [3, 7, 11, 12])
    np.testing.assert_array_equal(every_nth(np.arange(3, 13), 1), np.arange(3, 13))
    np.testing.assert_array_equal(every_nth(np.arange(3, 12), 4), [3, 7, 11])


def test_planes_span_widens_by_the_margin_in_mm_and_stays_in_the_array():
    from lungseg_core.inference.segmenter import planes_span

    mask = np.zeros((30, 4, 4), bool)
    mask[[10, 14, 20], 1, 1] = True
    np.testing.assert_array_equal(planes_span(mask, spacing_mm=2.0, margin_mm=5.0), np.arange(7, 24))
    np.testing.assert_array_equal(planes_span(mask, spacing_mm=1.0, margin_mm=15.0), np.arange(0, 30))
    assert planes_span(np.zeros_like(mask), 2.0, 5.0).size == 0


def test_network_probabilities_are_in_the_input_grid_and_give_the_network_labels(tmp_path, phantom):
    card_path, _ = save_tiny(tmp_path, context=1)
    segmenter = Segmenter(str(card_path), "lungs", device="cpu")
    probabilities = segmenter.network_probabilities(phantom.ct)
    assert probabilities.shape == (segmenter.card["num_classes"],) + phantom.ct.shape
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=2e-3)  # float16 softmax, then resized
    from lungseg_core.preprocessing.slices import labels_from_probabilities

    np.testing.assert_array_equal(labels_from_probabilities(probabilities), segmenter.network_labels(phantom.ct))
    path_3d = save_tiny_3d(tmp_path, (16, 32, 32))
    with pytest.raises(InputError, match="not a 2D slice network"):
        Segmenter(str(path_3d), "lungs").network_probabilities(phantom.ct)


@pytest.mark.parametrize("axes, flips", [((2, 1, 0), (False, False, False)), ((1, 0, 2), (True, False, True))])
def test_a_ct_stored_in_any_axis_order_gets_the_same_labels(phantom, axes, flips):
    """Slice networks cut axial slices whatever the storage order (a sagittal or coronal series, a transposed
    export): the shipped lung model gives the same labels, back in the input's own axis order."""
    segmenter = Segmenter("lungsegai-lungs", "lungs", device="cpu")
    stored = reorder_axes(phantom.ct, axes, flips)

    def as_stored(labels):
        return reorder_axes(phantom.ct.with_array(labels), axes, flips).array

    network = segmenter.network_labels(phantom.ct)
    assert dice(network > 0, phantom.lungs > 0) > 0.9  # the network itself finds the lungs here
    np.testing.assert_array_equal(segmenter.network_labels(stored), as_stored(network))
    np.testing.assert_array_equal(segmenter.predict(stored), as_stored(segmenter.predict(phantom.ct)))


def test_a_3d_network_sees_the_ct_in_the_same_view_whatever_the_storage_order(tmp_path, phantom):
    """3D patch networks, like slice networks, see the canonical view; labels return in the input's axis order."""
    segmenter = Segmenter(str(save_tiny_3d(tmp_path, (16, 32, 32))), "lungs", device="cpu")
    axes, flips = (2, 0, 1), (True, False, True)
    labels = segmenter.network_labels(phantom.ct)
    assert len(np.unique(labels)) > 1  # an untrained network, but not a constant one: a wrong view would show
    stored = segmenter.network_labels(reorder_axes(phantom.ct, axes, flips))
    np.testing.assert_array_equal(stored, reorder_axes(phantom.ct.with_array(labels), axes, flips).array)


def test_fusion_inputs_are_what_the_shipped_lung_model_fuses(phantom):
    """``fusion_inputs`` (classical lungs, network labels, HU, the network's mean lung probability per region) fused
    by ``add_dense_lung`` is the prediction, so a benchmark that splits the misses by rule sees the same inputs; the
    probability comes from the same pass as the labels; a CT without lungs runs no network."""
    from scipy import ndimage

    from lungseg_core.postprocessing import add_dense_lung

    segmenter = Segmenter("lungsegai-lungs", "lungs", device="cpu")
    classical, network, hu, region_probability = segmenter.fusion_inputs(phantom.ct)
    assert classical.any() and network.shape == phantom.ct.shape
    np.testing.assert_array_equal(hu, phantom.ct.array)
    # one class: where it labels lung, lung is the likelier; the background far from the lungs is sure
    lung_regions, count = ndimage.label(network > 0)
    assert count and np.all(region_probability(lung_regions, count) > 0.5)
    far = ndimage.distance_transform_edt(network == 0) > 8
    assert far.any() and region_probability(far.astype(np.int32), 1)[0] < 0.05
    fused = add_dense_lung(classical, network > 0, hu, phantom.ct, region_lung_probability=region_probability)
    np.testing.assert_array_equal(fused, segmenter.predict(phantom.ct))
    no_lungs = phantom.ct.with_array(np.full(phantom.ct.shape, 40, np.int16))  # soft tissue only
    fusion = segmenter.fusion_inputs(no_lungs)
    assert fusion.network is None and fusion.region_lung_probability is None and not fusion.classical.any()
