"""Dependency decisions (never touch Slicer's bundled packages, ask before installing) and the model list."""

from __future__ import annotations

import json
import types

import pytest

from LungSegAILib import catalog, dependencies, training


def _installers(answer=True):
    asked, installed = [], []
    installers = dependencies.Installers(confirm=lambda m: asked.append(m) or answer,
                                         pip_install=installed.append, log=lambda m: None)
    return installers, asked, installed


def test_bundled_packages_are_never_installed():
    requirements = {"numpy": "numpy>=2", "vtk": "vtk", "SimpleITK": "SimpleITK>=2", "skimage": "scikit-image"}
    assert dependencies.missing_requirements(requirements, importable=lambda name: False) == ["scikit-image"]


def test_install_missing_asks_once_and_installs_only_what_is_missing():
    installers, asked, installed = _installers(True)
    importable = {"skimage": True, "slicerio": False, "safetensors": False, "PIL": True, "matplotlib": True}
    done = dependencies.install_missing(installers, importable=lambda name: importable[name])
    assert installed == done == ["slicerio>=1.1", "safetensors>=0.4"]
    assert len(asked) == 1 and "slicerio" in asked[0]


def test_nothing_missing_means_no_question():
    installers, asked, installed = _installers(True)
    assert dependencies.install_missing(installers, importable=lambda name: True) == []
    assert asked == [] and installed == []


def test_declining_raises_a_clear_error():
    installers, asked, installed = _installers(False)
    with pytest.raises(dependencies.DependencyError, match="not installed"):
        dependencies.install_missing(installers, importable=lambda name: False)
    assert installed == []


def test_missing_pytorch_extension_explains_what_to_do():
    installers, asked, installed = _installers(True)

    def no_extension():
        raise ModuleNotFoundError("No module named 'PyTorchUtils'")

    with pytest.raises(dependencies.DependencyError, match="Extensions Manager"):
        dependencies.ensure_torch(installers, no_extension)


def _fake_pytorch_utils(installed: bool):
    calls = []

    class Logic:
        torch = types.SimpleNamespace(__version__="2.5")

        def torchInstalled(self):
            return installed

        def installTorch(self, **kwargs):
            calls.append(kwargs)
            return Logic.torch

    return types.SimpleNamespace(PyTorchUtilsLogic=Logic), calls


def test_installed_torch_is_returned_without_asking():
    installers, asked, _ = _installers(True)
    module, calls = _fake_pytorch_utils(installed=True)
    assert dependencies.ensure_torch(installers, lambda: module).__version__ == "2.5"
    assert asked == [] and calls == []


def test_torch_is_installed_through_pytorch_utils_after_confirmation():
    installers, asked, _ = _installers(True)
    module, calls = _fake_pytorch_utils(installed=False)
    dependencies.ensure_torch(installers, lambda: module)
    assert len(asked) == 1 and calls == [{"askConfirmation": False, "torchVersionRequirement": ">=2.1"}]
    installers, asked, _ = _installers(False)
    module, calls = _fake_pytorch_utils(installed=False)
    with pytest.raises(dependencies.DependencyError):
        dependencies.ensure_torch(installers, lambda: module)
    assert calls == []


def test_catalog_lists_classical_default_and_user_checkpoint():
    choices = catalog.load_catalog()
    ids = [c.id for c in choices]
    assert {"default", "threshold", "checkpoint"} <= set(ids)
    threshold = catalog.find_choice(choices, "threshold")
    assert not threshold.needs_torch and catalog.resolve_models(threshold) == ("threshold", "threshold")
    assert dependencies.needs_torch([threshold.lung_model]) is False
    with pytest.raises(KeyError, match="unknown model"):
        catalog.find_choice(choices, "nope")


def test_catalog_offers_every_shipped_lung_network_by_its_zoo_name():
    from lungseg_core.models import zoo

    choices = catalog.load_catalog()
    shipped = [card["name"] for card in zoo.shipped_cards() if card["task"] == "lungs"]
    assert shipped, "a lung network ships inside lungseg_core"
    for name in shipped:
        choice = catalog.find_choice(choices, name)
        assert choice.needs_torch and catalog.resolve_models(choice) == (name, "default")
        assert zoo.resolve_card(choice.lung_model, "lungs")["name"] == name


def test_user_checkpoint_replaces_the_network_of_its_task(tmp_path):
    choice = catalog.find_choice(catalog.load_catalog(), "checkpoint")
    card = tmp_path / "mine.json"
    card.write_text(json.dumps({"name": "mine", "task": "infection"}))
    assert catalog.resolve_models(choice, card) == ("default", str(card))
    card.write_text(json.dumps({"name": "mine", "task": "lungs"}))
    weights = tmp_path / "mine.safetensors"
    assert catalog.resolve_models(choice, weights) == (str(weights), "default")
    with pytest.raises(ValueError, match="Choose a model file"):
        catalog.resolve_models(choice, None)
    with pytest.raises(FileNotFoundError, match="model card"):
        catalog.checkpoint_task(tmp_path / "other.safetensors")


def test_evaluation_task_follows_the_selected_model(tmp_path):
    choices = catalog.load_catalog()
    card = tmp_path / "mine.json"
    card.write_text(json.dumps({"name": "mine", "task": "infection"}))
    assert catalog.evaluation_task(choices, "all", "checkpoint", card) == "infection"
    assert catalog.evaluation_task(choices, "all", str(card)) == "infection"  # a path given as the model
    assert catalog.evaluation_task(choices, "infection", "checkpoint", card) == "infection"
    assert catalog.evaluation_task(choices, "all", "default") == "all"
    assert catalog.evaluation_task(choices, "lungs", "threshold", card) == "lungs"  # a file only counts for 'mine'
    with pytest.raises(ValueError, match="'mine.json' segments infection, not lungs"):
        catalog.evaluation_task(choices, "lungs", "checkpoint", card)


def test_model_selection_takes_shipped_network_names_as_the_cli_does(tmp_path):
    from lungseg_core.errors import ModelError

    choices = catalog.load_catalog()
    assert catalog.resolve_selection(choices, "lungsegai-infection") == ("default", "lungsegai-infection")
    assert catalog.resolve_selection(choices, "threshold") == ("threshold", "threshold")
    with pytest.raises(ModelError, match="Unknown model 'nosuchmodel'.*lungsegai-infection"):
        catalog.resolve_selection(choices, "nosuchmodel")


def test_catalog_rejects_duplicate_ids(tmp_path):
    entry = {"id": "a", "title": "A", "description": "", "lung_model": "x", "infection_model": "y"}
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [entry, entry]}))
    with pytest.raises(ValueError, match="duplicate"):
        catalog.load_catalog(path)


def test_training_config_uses_the_users_dataset_and_epochs(tmp_path):
    recipe = tmp_path / "seed1_unet.json"
    recipe.write_text(json.dumps({"name": "seed1", "task": "lungs", "architecture": "unet", "epochs": 50,
                                  "data": [{"root": "/somewhere", "layout": "medseg"}]}))
    config = training.training_config(recipe, tmp_path / "data", 3, "segnet")
    assert config["data"] == [{"root": str((tmp_path / "data").resolve()), "layout": "auto"}]
    assert config["epochs"] == 3 and config["architecture"] == "segnet"
    assert json.loads(recipe.read_text())["epochs"] == 50  # the recipe itself is untouched
    assert training.training_config(recipe, tmp_path, 1)["architecture"] == "unet"


def test_evaluation_commands_predict_then_evaluate(tmp_path):
    segment, evaluate = training.evaluation_commands("imgs", "labels", tmp_path, "lungs", "threshold", "default",
                                                     python="py")
    assert segment[:4] == ["py", "-m", "lungseg_core.cli.main", "segment"]
    assert segment[segment.index("-o") + 1] == str(tmp_path / "pred")
    assert evaluate[3] == "evaluate" and evaluate[evaluate.index("--pred") + 1] == str(tmp_path / "pred")
    assert evaluate[evaluate.index("--ref") + 1] == "labels"


def test_segment_cli_accepts_the_arguments_the_panel_passes(tmp_path):
    """The evaluation panel's `lungseg segment` call must parse with the real CLI parser."""
    pytest.importorskip("lungseg_core.cli.segment")
    from lungseg_core.cli.main import build_parser

    segment, _ = training.evaluation_commands("imgs", "labels", tmp_path, "lungs", "threshold", "default")
    args = build_parser().parse_args(segment[3:])
    assert args.lung_model == "threshold" and args.task == "lungs" and args.overwrite


def test_read_metrics_csv_turns_numbers_into_floats(tmp_path):
    path = tmp_path / "per_case.csv"
    path.write_text("case,dice,hd95\na,0.97,3.5\nb,0.91,\n")
    assert training.read_metrics_csv(path) == [{"case": "a", "dice": 0.97, "hd95": 3.5},
                                               {"case": "b", "dice": 0.91, "hd95": ""}]
