"""The training loop: every seed recipe runs, checkpoints resume exactly, early stopping stops."""

import csv
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from lungseg_core.errors import InputError, ModelError
from lungseg_core.training.config import TrainConfig, load_config
from lungseg_core.models.registry import build_model, list_architectures
from lungseg_core.training.trainer import build_network, inflate_input_channels, load_checkpoint, train

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs").glob("seed*.json"))
SMALL_KWARGS = {
    "unet": {"base_filters": 4, "depth": 2},
    "segnet": {"base_filters": 4, "depth": 2},
    "resnet50_unet": {"decoder_channels": [8, 8, 8, 8, 8]},
    "resnet101_unet": {"decoder_channels": [8, 8, 8, 8, 8]},
    "deeplabv3plus_resnet50": {"aspp_channels": 8, "low_level_channels": 4},
}


def tiny(config_path: Path, **extra) -> TrainConfig:
    """The recipe as written, on 2 tiny phantoms, 64x64, a couple of slices, 1 epoch, a shrunk network."""
    raw = json.loads(config_path.read_text())
    hosts = {"layout": "phantom", "labels": "lungs", "role": "train", "options": {"cases": 1, "shape": [8, 48, 48], "seed": 9}}
    phantoms = {"layout": "phantom", "options": {"cases": 2, "shape": [8, 48, 48]}}
    overrides = {
        "data": [phantoms, hosts] if raw["task"] == "infection" else [phantoms],
        "slice_spec": {**raw["slice_spec"], "size": 64},
        "architecture_kwargs": SMALL_KWARGS[raw["architecture"]],
        "epochs": 1, "batch_size": 2, "max_slices_per_case": 2, "val_fraction": 0.5,
        "synthetic_lesions": {**raw.get("synthetic_lesions", {}), "copies": 1} if raw["task"] == "infection" else {},
        **extra,
    }
    return TrainConfig.from_dict({**raw, **overrides}, source=config_path)


def _log_rows(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_config_shipped_in_configs_loads():
    """Our own models' recipes too (their data need make_lidc_pseudo_labels.sh, so they do not train here)."""
    paths = sorted(CONFIGS[0].parent.glob("*.json"))
    assert {"lungsegai_lungs", "lungsegai_infection"} <= {p.stem for p in paths}
    for path in paths:
        config = load_config(path)
        assert config.data and config.epochs >= 1, path


def test_there_are_eight_seed_configs():
    names = {p.stem for p in CONFIGS}
    assert {"seed1_unet_lungs", "seed2_resnet50_unet_sgd_lungs", "seed3_segnet_lungs", "seed4_resnet101_unet_lungs",
            "seed5_unet_lungs", "seed5_deeplabv3plus_lungs", "seed5_unet_infection",
            "seed5_deeplabv3plus_infection"} <= names


# ResNet-50/101 encoders cannot be shrunk: their 1-epoch runs take ~10-30 s on a shared 2-core CPU
RECIPES = [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if "resnet" in p.stem or "deeplab" in p.stem else [])
           for p in CONFIGS]


@pytest.mark.parametrize("config_path", RECIPES)
def test_each_seed_recipe_trains_one_epoch(config_path, tmp_path):
    config = tiny(config_path)
    result = train(config, tmp_path / "run", log=None, command="pytest")
    run = tmp_path / "run"
    rows = _log_rows(run)
    assert len(rows) == 1 and np.isfinite(float(rows[0]["train_loss"])) and 0 <= float(rows[0]["val_dice"]) <= 1
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "checkpoints" / "last.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    card = json.loads(result.package.read_text())
    assert card["architecture"] == config.architecture and card["task"] == config.task
    assert card["in_channels"] == config.in_channels and card["slice_spec"]["size"] == 64
    assert len(card["sha256"]) == 64 and (result.package.parent / card["weights_file"]).exists()
    assert card["training"]["seed"] == config.seed and card["training"]["epochs"] == 1
    assert "val_dice" in card["metrics"] and card["metrics"]["val_dice"]["command"] == "pytest"
    assert card.get("crop_to_lungs", False) == config.crop_to_lungs  # inference then cuts the CT the same way


@pytest.mark.slow
@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.stem)
def test_real_architecture_of_each_recipe_steps_at_64(config_path):
    config = load_config(config_path)
    model = build_network(config)  # the recipe's own architecture and options
    from lungseg_core.training.losses import build_loss

    images = torch.rand(2, config.in_channels, 64, 64)
    labels = torch.randint(0, config.num_classes, (2, 64, 64))
    logits = model(images)
    assert logits.shape == (2, config.num_classes, 64, 64)
    build_loss(config.loss, **config.loss_kwargs)(logits, labels).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


UNET = next(p for p in CONFIGS if p.stem == "seed5_unet_lungs")


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    config = tiny(UNET, epochs=2)
    straight = train(config, tmp_path / "straight", log=None)
    train(config, tmp_path / "resumed", epochs=1, log=None)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["epoch"] == 1
    resumed = train(config, tmp_path / "resumed", resume=True, log=None)
    assert resumed.epochs_run == 2 and [r["epoch"] for r in _log_rows(tmp_path / "resumed")] == ["1", "2"]
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6)
    assert straight.history[-1]["val_loss"] == pytest.approx(resumed.history[-1]["val_loss"], rel=1e-5)


def test_run_folder_protection(tmp_path):
    config = tiny(UNET)
    with pytest.raises(InputError, match="Nothing to resume"):
        train(config, tmp_path / "run", resume=True, log=None)
    train(config, tmp_path / "run", log=None)
    with pytest.raises(InputError, match="already holds a training run"):
        train(config, tmp_path / "run", log=None)
    changed = tiny(UNET, num_classes=2)
    with pytest.raises(InputError, match="num_classes 3 → 2"):
        train(changed, tmp_path / "run", resume=True, epochs=2, log=None)


def test_resume_refuses_another_config_naming_the_keys_and_allows_more_epochs(tmp_path):
    """A resume continues the checkpoint's weights, best epoch and split: with other data, name or seed it would
    mix two runs in one model package, so only epochs (and crossval's NOT_COMPARED keys) may change."""
    run = tmp_path / "run"
    train(tiny(UNET), run, log=None)
    saved = (run / "config.json").read_text()
    other_data = [{"layout": "phantom", "options": {"cases": 3, "shape": [8, 48, 48]}}]
    other = tiny(UNET, name="other", seed=1, data=other_data)
    with pytest.raises(InputError, match=r'name "seed5-unet-lungs" → "other", data\.0\.options\.cases 2 → 3, seed 0 → 1'):
        train(other, run, resume=True, epochs=2, log=None)
    assert (run / "config.json").read_text() == saved and not (run / "model" / "other.json").exists()
    continued = train(tiny(UNET, num_workers=1, description="continued"), run, resume=True, epochs=2, log=None)
    assert continued.epochs_run == 2


def _interrupt_in_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C (or the Slicer panel's Stop): a real SIGINT to this process as epoch ``epoch`` starts training."""
    import lungseg_core.training.trainer as trainer

    real, calls = trainer.train_one_epoch, []

    def train_one_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", train_one_epoch)


def test_a_ctrl_c_while_checkpoints_are_written_waits_for_them(tmp_path, monkeypatch):
    """SIGINT during the epoch's saves must not leave last.pt, summary.json and the card naming other epochs, and
    the trainer puts the previous SIGINT handler back."""
    import lungseg_core.training.trainer as trainer

    real = trainer._save_checkpoint

    def save_checkpoint(path, payload):
        if path.name == "last.pt" and payload["epoch"] == 2:
            signal.raise_signal(signal.SIGINT)  # after best.pt of epoch 2 may have been written, before last.pt
        real(path, payload)

    monkeypatch.setattr(trainer, "_save_checkpoint", save_checkpoint)
    monkeypatch.setattr(trainer, "_improved", lambda *args: True)  # every epoch is the best: best.pt is written too
    before = signal.getsignal(signal.SIGINT)
    result = train(tiny(UNET, epochs=3), tmp_path / "run", log=None)
    assert signal.getsignal(signal.SIGINT) is before
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    card = json.loads(result.package.read_text())
    assert result.interrupted and summary["interrupted"] and result.epochs_run == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2 == summary["epochs_run"]
    assert card["training"]["epochs"] == 2 == card["training"]["best_epoch"] == summary["best_epoch"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["epoch"] == 2


def _folders_recipe(tmp_path) -> Path:
    """A recipe in tmp/recipes/lungs/ whose optional folder source is given relative to it (../../slices)."""
    from lungseg_core.synthetic import make_chest_phantom
    from lungseg_core.tests.training.test_sampling import _slice_folder

    phantom = make_chest_phantom(shape=(8, 48, 48), seed=0)
    _slice_folder(tmp_path / "slices", phantom, {"lungs": phantom.lungs})
    raw = {**tiny(UNET).to_dict(), "val_fraction": 0,
           "data": [{"layout": "phantom", "options": {"cases": 1, "shape": [8, 48, 48]}},
                    {"root": "../../slices", "layout": "folders", "optional": True, "crop_to_lungs": False}]}
    path = tmp_path / "recipes" / "lungs" / "recipe.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(raw))
    return path


def test_a_resume_with_the_runs_config_json_reads_the_runs_data(tmp_path):
    """The run folder is elsewhere than the recipe: its config.json must name the folders the run read (roots
    saved absolute), not strings that resolve to other folders from there, and a resume must not skip a source
    the run trained on because it is optional."""
    recipe, run = _folders_recipe(tmp_path), tmp_path / "run"
    train(load_config(recipe), run, log=None)
    assert json.loads((run / "config.json").read_text())["data"][1]["root"] == str(tmp_path / "slices")
    messages = []
    resumed = train(load_config(run / "config.json"), run, resume=True, epochs=2, log=messages.append)
    assert resumed.epochs_run == 2 and not any("missing" in str(m) for m in messages)
    assert "s" in json.loads((run / "summary.json").read_text())["train_cases"]  # the slice folder's one case
    for folder in ("images", "lungs"):  # one more case in the folder: another split, other data
        shutil.copy(tmp_path / "slices" / folder / "s.png", tmp_path / "slices" / folder / "t.png")
    with pytest.raises(InputError, match=r"its training cases changed \(no longer there: none; new: t\)"):
        train(load_config(recipe), run, resume=True, epochs=3, log=None)
    shutil.rmtree(tmp_path / "slices")
    with pytest.raises(InputError, match=r"optional data changed \(data\[1\] .* is missing \(the run trained on it\)"):
        train(load_config(recipe), run, resume=True, epochs=3, log=None)


def test_a_resume_with_an_old_runs_own_config_json_is_refused(tmp_path):
    """Runs saved before roots were stored absolute hold roots relative to their recipe: read from the run folder
    they name other folders, so their own config.json cannot resume them."""
    recipe, run = _folders_recipe(tmp_path), tmp_path / "run"
    train(load_config(recipe), run, log=None)
    old = json.loads(recipe.read_text())  # roots as written in the recipe, as older versions saved them
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    torch.save({**checkpoint, "config": {**checkpoint["config"], "data": old["data"]}}, run / "checkpoints" / "last.pt")
    (run / "config.json").write_text(json.dumps({**checkpoint["config"], "data": old["data"]}))
    with pytest.raises(InputError, match="with its own config.json: its relative data roots"):
        train(load_config(run / "config.json"), run, resume=True, epochs=2, log=None)
    assert train(load_config(recipe), run, resume=True, epochs=2, log=None).epochs_run == 2  # the recipe still does


def test_a_refused_resume_reads_no_data(tmp_path, monkeypatch):
    import lungseg_core.training.trainer as trainer

    train(tiny(UNET), tmp_path / "run", log=None)
    monkeypatch.setattr(trainer, "build_training_data", lambda *a, **k: pytest.fail("data read before the check"))
    with pytest.raises(InputError, match="num_classes 3 → 2"):
        train(tiny(UNET, num_classes=2), tmp_path / "run", resume=True, epochs=2, log=None)


def test_an_interrupted_run_packages_its_best_epoch_and_resumes(tmp_path, monkeypatch):
    _interrupt_in_epoch(monkeypatch, 2)
    result = train(tiny(UNET, epochs=3), tmp_path / "run", log=None)
    assert result.interrupted and result.epochs_run == 1
    card = json.loads(result.package.read_text())
    assert card["training"]["best_epoch"] == 1 and (result.package.parent / card["weights_file"]).exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["interrupted"] is True
    monkeypatch.undo()
    resumed = train(tiny(UNET, epochs=3), tmp_path / "run", resume=True, log=None)
    assert not resumed.interrupted and resumed.epochs_run == 3


def test_an_interrupt_before_the_first_epoch_ends_leaves_no_package(tmp_path, monkeypatch):
    _interrupt_in_epoch(monkeypatch, 1)
    result = train(tiny(UNET, epochs=2), tmp_path / "run", log=None)
    assert result.interrupted and result.package is None and result.epochs_run == 0


def test_early_stopping_stops_after_patience(tmp_path):
    # an impossible min_delta: nothing after epoch 1 counts as an improvement
    config = tiny(UNET, epochs=10, early_stopping_patience=2, min_delta=1e9, monitor="val_loss", scheduler="none")
    result = train(config, tmp_path / "run", log=None)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1
    assert len(_log_rows(tmp_path / "run")) == 3


def test_epochs_argument_sets_the_length_of_the_cosine_schedule(tmp_path):
    config = tiny(UNET, epochs=10, scheduler="cosine", scheduler_kwargs={}, early_stopping_patience=0, lr=1e-3)
    train(config, tmp_path / "run", epochs=2, log=None)
    rows = _log_rows(tmp_path / "run")
    assert len(rows) == 2
    # over 10 epochs the rate would still be 0.9e-3 in epoch 2; over 2 it has come down to half or less
    assert float(rows[-1]["lr"]) <= 0.5e-3 + 1e-9
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 2


def test_config_errors_say_what_to_fix(tmp_path):
    base = json.loads(UNET.read_text())
    cases = [({"learning_rate": 1}, "Unknown config key"), ({"optimizer": "rmsprop"}, "use one of: adam, adamw, sgd"),
             ({"epochs": "ten"}, "must be a whole number"), ({"lr": 0}, "too small"),
             ({"slice_spec": {"size": 4}}, "Invalid slice_spec"), ({"loss": "hinge"}, "Config key 'loss'"),
             ({"data": [{"root": "x", "format": "y"}]}, "Unknown key"), ({"folds": 5, "fold": 5}, "fold 5 does not exist")]
    for change, message in cases:
        path = tmp_path / "c.json"
        path.write_text(json.dumps({**base, **change}))
        with pytest.raises(InputError, match=message):
            load_config(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_config(path)


def test_fine_tuning_starts_from_the_given_model(tmp_path):
    recipe = CONFIGS[0]  # seed 1 U-Net
    first = train(tiny(recipe), tmp_path / "first", device="cpu", log=None)
    # a learning rate too small to move the weights: the fine-tuned model must still be the first one
    tuned = train(tiny(recipe, init_weights=str(first.package), lr=1e-12), tmp_path / "tuned", device="cpu", log=None)
    scratch = train(tiny(recipe, seed=5, lr=1e-12), tmp_path / "scratch", device="cpu", log=None)
    from lungseg_core.models import zoo

    weights = {name: zoo.load(str(run.package), "lungs").network.state_dict() for name, run in
               (("first", first), ("tuned", tuned), ("scratch", scratch))}
    key = next(iter(weights["first"]))
    assert torch.allclose(weights["tuned"][key], weights["first"][key], atol=1e-6)
    assert not torch.allclose(weights["scratch"][key], weights["first"][key], atol=1e-3)
    assert json.loads(tuned.package.read_text())["training"]["fine_tuned_from"] == str(first.package)
    with pytest.raises(InputError, match="Cannot fine-tune"):
        train(tiny(recipe, init_weights=str(first.package), architecture_kwargs={"base_filters": 8, "depth": 2}), tmp_path / "other", device="cpu", log=None)


@pytest.mark.parametrize("architecture", [name for name in list_architectures() if name != "unet3d"])
def test_inflated_2d_weights_make_a_2p5d_network_compute_what_the_2d_one_did(architecture):
    """The neighbour channels start at zero: whatever the neighbouring slices hold, the 2.5D network's output is
    the 2D network's output on the centre slice (context 2: 5 channels, the centre one is channel 2)."""
    torch.manual_seed(0)
    flat = build_model(architecture, in_channels=1, num_classes=2).eval()
    deep = build_model(architecture, in_channels=5, num_classes=2).eval()
    fresh = build_model(architecture, in_channels=5, num_classes=2).eval()
    deep.load_state_dict(inflate_input_channels(flat.state_dict(), deep.state_dict(), 5))
    slices = torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        assert torch.allclose(deep(slices), flat(slices[:, 2:3]), atol=1e-4)
        assert not torch.allclose(fresh(slices), flat(slices[:, 2:3]), atol=1e-2)


def test_a_2d_model_starts_a_2p5d_fine_tune_and_a_2p5d_model_cannot_start_a_2d_one(tmp_path):
    recipe = CONFIGS[0]  # seed 1 U-Net, 2D
    first = train(tiny(recipe), tmp_path / "first", device="cpu", log=None)
    spec = {**json.loads(recipe.read_text())["slice_spec"], "size": 64, "context": 1}
    deep = train(tiny(recipe, init_weights=str(first.package), lr=1e-12, slice_spec=spec), tmp_path / "deep",
                 device="cpu", log=None)
    from lungseg_core.models import zoo

    before = zoo.load(str(first.package), "lungs").network.state_dict()
    after = zoo.load(str(deep.package), "lungs").network.state_dict()
    grown = [name for name in after if after[name].shape != before[name].shape]
    assert len(grown) == 1 and after[grown[0]].shape[1] == 3 and before[grown[0]].shape[1] == 1
    assert torch.allclose(after[grown[0]][:, 1:2].float(), before[grown[0]].float(), atol=1e-6)
    assert float(after[grown[0]][:, [0, 2]].abs().max()) < 1e-6
    with pytest.raises(InputError, match="in_channels"):
        train(tiny(recipe, init_weights=str(deep.package)), tmp_path / "back", device="cpu", log=None)


def test_a_missing_model_to_fine_tune_from_is_refused_before_the_data_is_read(tmp_path):
    messages = []
    with pytest.raises(ModelError, match="does not exist"):
        train(tiny(CONFIGS[0], init_weights=str(tmp_path / "no_such_model.json")), tmp_path / "run", device="cpu",
              log=messages.append)
    assert not any(str(message).startswith("data:") for message in messages)


def test_fine_tuning_to_another_number_of_classes_keeps_all_but_the_output_layer(tmp_path):
    """A lung model as the start of a model with other classes (an infection model): the output layer starts
    afresh, every other layer starts from the given model."""
    recipe = CONFIGS[0]  # seed 1 U-Net, 2 classes (background, lung)
    first = train(tiny(recipe), tmp_path / "first", device="cpu", log=None)
    messages = []
    tuned = train(tiny(recipe, init_weights=str(first.package), num_classes=3, lr=1e-12), tmp_path / "tuned",
                  device="cpu", log=messages.append)
    from lungseg_core.models import zoo

    before = zoo.load(str(first.package), "lungs").network.state_dict()
    after = zoo.load(str(tuned.package), "lungs").network.state_dict()
    changed = sorted(name for name in after if after[name].shape != before[name].shape)
    assert changed and all(name.startswith("head") for name in changed)
    for name in after:  # the learned weights; batch-norm statistics move even at a zero learning rate
        if name not in changed and "running_" not in name and "num_batches" not in name:
            assert torch.allclose(after[name].float(), before[name].float(), atol=1e-6), name
    assert any("started afresh: " + ", ".join(changed) in str(message) for message in messages)


def test_test_time_mirror_goes_from_config_to_card_to_inference(tmp_path, monkeypatch):
    from lungseg_core.inference import segmenter as segmenter_module
    from lungseg_core.synthetic import make_chest_phantom

    recipe = next(p for p in CONFIGS if "infection" in p.name)
    run = train(tiny(recipe, test_time_mirror=True), tmp_path / "run", device="cpu", log=None)
    assert json.loads(run.package.read_text())["test_time_mirror"] is True
    calls = []
    real = segmenter_module.predict_labels
    monkeypatch.setattr(segmenter_module, "predict_labels", lambda *a, **k: calls.append(k["mirror"]) or real(*a, **k))
    phantom = make_chest_phantom(shape=(8, 48, 48), seed=1)
    segmenter_module.Segmenter(str(run.package), "infection", device="cpu").predict(phantom.ct, lungs=phantom.lungs)
    assert calls == [True]


def test_a_card_trained_without_validation_split_says_its_scores_are_on_training_slices(tmp_path):
    recipe = next(p for p in CONFIGS if "infection" in p.name)
    held_out = train(tiny(recipe), tmp_path / "split", device="cpu", log=None)
    for metric in json.loads(held_out.package.read_text())["metrics"].values():
        assert metric["data"].startswith("validation split")
    on_training = train(tiny(recipe, val_fraction=0.0), tmp_path / "all", device="cpu", log=None)
    metrics = json.loads(on_training.package.read_text())["metrics"]
    assert metrics and all("no validation split" in m["data"] for m in metrics.values())


class _FixedPrediction(torch.nn.Module):
    """A "network" whose logits are one-hot of a fixed label map, whatever the image."""

    def __init__(self, labels: torch.Tensor, classes: int):
        super().__init__()
        self.logits = torch.nn.functional.one_hot(labels, classes).movedim(-1, 0).float() * 10

    def forward(self, images):
        return self.logits.expand(images.shape[0], -1, -1, -1)


def test_validation_scores_any_infection_as_well_as_each_class():
    from lungseg_core.training.losses import build_loss
    from lungseg_core.training.trainer import _dice_from_sums, evaluate

    truth = torch.zeros(8, 8, dtype=torch.long)
    truth[1:4, 1:4] = 1  # GGO
    truth[5:7, 5:7] = 2  # consolidation
    called = torch.where(truth == 0, truth, 3 - truth)  # every lesion found, each in the other class
    loader = [(torch.zeros(2, 1, 8, 8), truth.expand(2, -1, -1))]
    sums = evaluate(_FixedPrediction(called, 3), loader, build_loss("cross_entropy"), torch.device("cpu"), 3, False)
    per_class, any_lesion = _dice_from_sums(sums, 3)
    assert per_class == [0.0, 0.0] and any_lesion == 1.0
    with pytest.raises(InputError, match="monitor"):
        TrainConfig.from_dict({"name": "x", "task": "infection", "architecture": "unet", "data": [], "monitor": "dice"})


def test_imagenet_started_encoder_is_recorded_and_not_needed_to_load(tmp_path):
    """A network started from an ImageNet checkpoint: the card names that file and its SHA-256, and the trained
    model still loads once the checkpoint is gone (inference never reads it)."""
    from lungseg_core.models import zoo
    from lungseg_core.models.efficientnet import EfficientNetLite

    checkpoint = tmp_path / "lite0-imagenet.pth"
    torch.manual_seed(3)
    torch.save(EfficientNetLite(in_channels=3).state_dict(), checkpoint)
    config = tiny(CONFIGS[0], architecture="efficientnet_lite0_unet",
                  architecture_kwargs={"encoder_weights": str(checkpoint)})
    model = build_network(config)
    stem = torch.load(checkpoint, weights_only=True)["stem.0.weight"]
    torch.testing.assert_close(model.encoder.stem[0].weight[:, 0], stem.sum(dim=1))  # started from the file

    result = train(config, tmp_path / "run", log=None, command="pytest")
    card = json.loads(result.package.read_text())
    assert "encoder_weights" not in card["architecture_kwargs"]
    assert card["training"]["encoder_weights"] == {"given": str(checkpoint), "file": checkpoint.name,
                                                   "sha256": zoo.sha256_file(checkpoint)}
    assert card["training"]["config"]["architecture_kwargs"]["encoder_weights"] == str(checkpoint)
    checkpoint.unlink()
    loaded = zoo.load(str(result.package), "lungs")
    assert loaded.network(torch.rand(1, 1, 64, 64)).shape == (1, config.num_classes, 64, 64)


@pytest.mark.parametrize("requested, index", [("cuda", 0), ("auto", 0), ("cuda:1", 1)])
def test_a_cuda_device_is_selected_by_index(monkeypatch, requested, index):
    # torch 2.11 refuses torch.cuda.set_device(torch.device("cuda")): "--device cuda" crashed on a GPU machine
    from lungseg_core.training import trainer

    selected = []

    def set_device(device):
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError("Expected a torch.device with a specified index")
        selected.append(device)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    device = trainer.choose_device(requested)
    assert device == torch.device("cuda", index)
    assert selected == [device]
