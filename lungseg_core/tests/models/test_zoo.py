"""Model packages: save/load round trip, SHA-256 verification, clear errors, safe defaults."""

from __future__ import annotations

import json

import pytest
import torch

from lungseg_core.errors import ModelError
from lungseg_core.models import build_model, zoo
from lungseg_core.preprocessing.slices import SliceSpec


def tiny_card(name="tiny", task="lungs", num_classes=3, context=0, size=32):
    spec = SliceSpec(size=size, context=context)
    return {
        "name": name, "task": task, "architecture": "resunet",
        "architecture_kwargs": {"base_filters": 4}, "in_channels": spec.in_channels, "num_classes": num_classes,
        "slice_spec": spec.to_dict(), "labels": {"1": "Right lung", "2": "Left lung"},
        "training": {"note": "test fixture, random weights"},
    }


def save_tiny(tmp_path, **kwargs):
    card = tiny_card(**kwargs)
    torch.manual_seed(0)
    network = build_model(card["architecture"], in_channels=card["in_channels"], num_classes=card["num_classes"],
                          **card["architecture_kwargs"])
    return zoo.save_model_package(network, card, tmp_path), network


def test_round_trip_restores_identical_weights(tmp_path):
    card_path, network = save_tiny(tmp_path)
    card = json.loads(card_path.read_text())
    assert card["sha256"] == zoo.sha256_file(tmp_path / "tiny.safetensors")
    loaded = zoo.load(str(card_path), "lungs")
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value)
    assert not loaded.network.training


def test_tampered_weights_fail_the_sha256_check(tmp_path):
    card_path, _ = save_tiny(tmp_path)
    weights = tmp_path / "tiny.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        zoo.load(str(card_path), "lungs")


def test_missing_weights_file_and_missing_card(tmp_path):
    card_path, _ = save_tiny(tmp_path)
    (tmp_path / "tiny.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        zoo.load(str(card_path), "lungs")
    with pytest.raises(ModelError, match="does not exist"):
        zoo.resolve_card(str(tmp_path / "other.safetensors"), "lungs")
    (tmp_path / "lonely.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="no model card"):
        zoo.resolve_card(str(tmp_path / "lonely.safetensors"), "lungs")


def test_unknown_name_lists_the_choices():
    with pytest.raises(ModelError, match="threshold"):
        zoo.resolve_card("no-such-model", "lungs")


def test_wrong_task_is_refused(tmp_path):
    card_path, _ = save_tiny(tmp_path)
    with pytest.raises(ModelError, match="not infection"):
        zoo.load(str(card_path), "infection")


def test_pickle_checkpoints_are_loaded_with_weights_only(tmp_path):
    card_path, network = save_tiny(tmp_path)
    card = json.loads(card_path.read_text())
    torch.save({"model": network.state_dict()}, tmp_path / "tiny.pt")
    card.update(weights_file="tiny.pt", sha256=zoo.sha256_file(tmp_path / "tiny.pt"))
    card_path.write_text(json.dumps(card))
    assert zoo.load(str(card_path), "lungs").card["weights_file"] == "tiny.pt"

    class Evil:
        def __reduce__(self):
            return (print, ("arbitrary code ran",))

    torch.save({"model": Evil()}, tmp_path / "tiny.pt")
    card.update(sha256=zoo.sha256_file(tmp_path / "tiny.pt"))
    card_path.write_text(json.dumps(card))
    with pytest.raises(Exception):  # weights_only=True refuses arbitrary objects
        zoo.load(str(card_path), "lungs")


def test_classical_is_always_available_and_defaults_are_trained():
    names = {(c["name"], c["task"]) for c in zoo.available_models()}
    assert ("threshold", "lungs") in names and ("threshold", "infection") in names
    for task in zoo.TASKS:
        default = zoo.resolve_card("default", task)
        if default["architecture"] != "classical":
            # a shipped default must be a trained network with measured metrics and verified weights
            assert default.get("metrics"), default["name"]
            assert zoo.sha256_file(zoo.weights_path(default)) == default["sha256"]


def test_shipped_cards_are_complete_and_verified():
    for card in zoo.shipped_cards():
        for key in ("training", "metrics"):
            assert card.get(key), f"{card['name']} card lacks {key}"
        assert zoo.sha256_file(zoo.weights_path(card)) == card["sha256"]
        assert zoo.weights_path(card).stat().st_size < 25 * 1024 * 1024
