"""Broken model packages: each gives a one-line ModelError naming the file and the fix, never a traceback."""

from __future__ import annotations

import json

import pytest
import torch

from lungseg_core.errors import ModelError
from lungseg_core.models import build_model, zoo
from lungseg_core.tests.models.test_zoo import save_tiny


def replace_weights(card_path, data: bytes, name="tiny.safetensors"):
    """Put ``data`` in the weights file and make the card's SHA-256 match it, so only the content is wrong."""
    weights = card_path.parent / name
    weights.write_bytes(data)
    card = json.loads(card_path.read_text())
    card.update(weights_file=name, sha256=zoo.sha256_file(weights))
    card_path.write_text(json.dumps(card))


def load_error(card_path) -> str:
    with pytest.raises(ModelError) as info:
        zoo.load(str(card_path), "lungs")
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name, data", [
    ("tiny.safetensors", b"not a safetensors file at all" * 4),
    ("tiny.safetensors", None),  # truncated: the first 3 kB of the real file
    ("tiny.pt", b"PK\x03\x04 a broken zip archive" * 8),
])
def test_corrupt_weights_file(tmp_path, name, data):
    card_path, _ = save_tiny(tmp_path)
    if data is None:
        data = (tmp_path / "tiny.safetensors").read_bytes()[:3000]
    replace_weights(card_path, data, name)
    message = load_error(card_path)
    assert f"'{name}'" in message and "corrupt" in message and "reinstall" in message


def test_pickled_code_in_a_checkpoint_is_refused_not_run(tmp_path):
    card_path, network = save_tiny(tmp_path)
    ran = []

    class Payload:
        def __reduce__(self):
            return (ran.append, ("code ran",))

    torch.save({"model": network.state_dict(), "extra": Payload()}, tmp_path / "tiny.pt")
    replace_weights(card_path, (tmp_path / "tiny.pt").read_bytes(), "tiny.pt")
    message = load_error(card_path)
    assert "objects other than tensors" in message and "safetensors" in message
    assert ran == []


def test_weights_of_another_architecture(tmp_path):
    card_path, _ = save_tiny(tmp_path)
    other = build_model("unet", in_channels=1, num_classes=3)
    torch.save(other.state_dict(), tmp_path / "tiny.pt")
    replace_weights(card_path, (tmp_path / "tiny.pt").read_bytes(), "tiny.pt")
    message = load_error(card_path)
    assert "do not fit architecture 'resunet'" in message and "re-export" in message


@pytest.mark.parametrize("change, expected", [
    ({"architecture": "transformer9000"}, "Unknown architecture"),
    ({"architecture_kwargs": {"no_such_option": 1}}, "no option(s) no_such_option"),
])
def test_card_naming_an_unknown_architecture_or_option(tmp_path, change, expected):
    card_path, _ = save_tiny(tmp_path)
    card = json.loads(card_path.read_text())
    card.update(change)
    card_path.write_text(json.dumps(card))
    assert expected in load_error(card_path)


def test_sha256_mismatch_with_the_card(tmp_path):
    card_path, _ = save_tiny(tmp_path)
    card = json.loads(card_path.read_text())
    card["sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    message = load_error(card_path)
    assert "SHA-256" in message and "card 000000000000" in message


def test_unreadable_card(tmp_path):
    card_path, _ = save_tiny(tmp_path)
    card_path.write_text("{ not json")
    with pytest.raises(ModelError, match="unreadable"):
        zoo.resolve_card(str(card_path), "lungs")
