"""Model packages: a weights file plus its model card, found by name or path, verified by SHA-256.

A package is ``NAME.safetensors`` (state dict) beside ``NAME.json`` (the card: architecture, input
specification, labels, training provenance, measured metrics, ``sha256`` of the weights). Shipped packages
live in ``lungseg_core/resources/models/``; ``defaults.json`` there names each task's default. The
classical method is the pseudo-model ``threshold``: no weights, always available.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lungseg_core.errors import ModelError
from lungseg_core.io.atomic import atomic_path
from lungseg_core.labels import TASKS

MODELS_DIR = Path(__file__).resolve().parents[1] / "resources" / "models"
CLASSICAL = "threshold"
REQUIRED_CARD_KEYS = ("name", "task", "architecture", "in_channels", "num_classes", "slice_spec", "labels", "sha256")

CLASSICAL_CARDS = {
    "lungs": {
        "name": CLASSICAL, "task": "lungs", "architecture": "classical",
        "description": "Classical lung segmentation: HU threshold, connected components, trachea and bowel-gas "
                       "removal, hole filling, left/right split. No weights; the floor every learned model must beat.",
        "labels": {"1": "Right lung", "2": "Left lung"}, "sha256": None,
    },
    "infection": {
        "name": CLASSICAL, "task": "infection", "architecture": "classical",
        "description": "Classical infection baseline: HU bands inside the lungs (GGO about -750..-300 HU, "
                       "consolidation about -100..+60 HU) with vessel suppression. A weak baseline, not a diagnosis.",
        "labels": {"1": "Ground-glass opacity", "2": "Consolidation"}, "sha256": None,
    },
}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"Model card '{path}' is unreadable ({exc})", "restore the .json file of the model") from None
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise ModelError(f"Model card '{path.name}' lacks {', '.join(missing)}", "re-export the model with `lungseg train`")
    card["_card_path"] = str(path)
    return card


def shipped_cards() -> list[dict[str, Any]]:
    """Cards of the models inside the package (not the classical method)."""
    return [_read_card(p) for p in sorted(MODELS_DIR.glob("*.json")) if p.name != "defaults.json"]


def default_model_name(task: str) -> str:
    defaults = json.loads((MODELS_DIR / "defaults.json").read_text(encoding="utf-8"))
    return defaults.get(task, CLASSICAL)


def available_models(task: str | None = None) -> list[dict[str, Any]]:
    """Every selectable model (classical first), optionally for one task."""
    cards = [dict(CLASSICAL_CARDS[t]) for t in TASKS] + shipped_cards()
    for card in cards:
        card["default"] = default_model_name(card["task"]) == card["name"]
    return [c for c in cards if task in (None, "all", c["task"])]


def resolve_card(name_or_path: str, task: str) -> dict[str, Any]:
    """The card for a model name (``default``, ``threshold``, a shipped name) or a path to a package."""
    if name_or_path in ("default", "", None):
        name_or_path = default_model_name(task)
    if name_or_path == CLASSICAL:
        return dict(CLASSICAL_CARDS[task])
    path = Path(name_or_path)
    if path.suffix in (".json", ".safetensors", ".pt", ".pth") or os.sep in str(name_or_path):
        return _card_from_path(path)
    for card in shipped_cards():
        if card["name"] == name_or_path:
            return card
    names = ", ".join(sorted({c["name"] for c in available_models()}))
    raise ModelError(f"Unknown model '{name_or_path}'", f"choose one of: {names}, or give the path of a model .json/.safetensors file")


def _card_from_path(path: Path) -> dict[str, Any]:
    card_path = path if path.suffix == ".json" else path.with_suffix(".json")
    if not path.exists():
        raise ModelError(f"Model file '{path}' does not exist", "check the path, or run `lungseg models` to list installed models")
    if not card_path.exists():
        raise ModelError(
            f"Model '{path.name}' has no model card '{card_path.name}' beside it",
            "keep the .json written by `lungseg train` next to the weights file",
        )
    return _read_card(card_path)


def weights_path(card: dict[str, Any]) -> Path:
    card_path = Path(card["_card_path"])
    return card_path.parent / card.get("weights_file", card_path.with_suffix(".safetensors").name)


def load_state_dict(card: dict[str, Any]) -> dict:
    """The verified state dict of a card's weights (safetensors, or torch.load with weights_only=True)."""
    path = weights_path(card)
    if not path.exists():
        raise ModelError(f"Weights file '{path}' of model '{card['name']}' is missing", "reinstall or re-train the model")
    actual = sha256_file(path)
    if card["sha256"] and actual != card["sha256"]:
        raise ModelError(
            f"Weights of model '{card['name']}' fail the SHA-256 check (card {card['sha256'][:12]}..., file {actual[:12]}...)",
            "the file is corrupt or was replaced: reinstall the model or re-export it with its card",
        )
    try:
        state = _read_weights(path)
    except Exception as exc:  # safetensors, zip, unpickling and torch errors have no common base class
        reason = " ".join(str(exc).split())[:160] or exc.__class__.__name__
        if isinstance(exc, pickle.UnpicklingError):
            raise ModelError(
                f"Weights file '{path.name}' of model '{card['name']}' holds objects other than tensors, which "
                f"weights-only loading refuses (they could run code) ({reason})",
                "use weights from a trusted source, saved as .safetensors (`lungseg train` writes them)",
            ) from None
        raise ModelError(
            f"Weights file '{path.name}' of model '{card['name']}' cannot be read: it is corrupt or not a "
            f"weights file ({reason})",
            "reinstall the model or re-export it (a .safetensors file with its card)",
        ) from None
    if not isinstance(state, dict):
        raise ModelError(f"Weights file '{path.name}' of model '{card['name']}' holds no state dict",
                         "save the model's state_dict() (or use `lungseg train`, which writes .safetensors)")
    return state


def _read_weights(path: Path) -> Any:
    """A state dict from .safetensors, or from a torch checkpoint without executing any pickled code."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("model", state) if isinstance(state, dict) else state


@dataclass
class LoadedModel:
    network: Any  # torch.nn.Module in eval mode on its device
    card: dict[str, Any]
    device: Any


def load(name_or_path: str, task: str, device: Any = "cpu") -> LoadedModel:
    """Build the named model's architecture, load and verify its weights, put it on ``device`` in eval mode."""
    return load_card(resolve_card(name_or_path, task), task, device)


def load_card(card: dict[str, Any], task: str, device: Any = "cpu") -> LoadedModel:
    """:func:`load` for a card already resolved (no second look-up)."""
    from lungseg_core.models.registry import build_model, network_kwargs

    if card["architecture"] == "classical":
        raise ModelError("The classical method has no network", "use lungseg_core.inference.Segmenter for it")
    if card["task"] != task:
        raise ModelError(f"Model '{card['name']}' segments {card['task']}, not {task}", f"choose a {task} model (see `lungseg models`)")
    network = build_model(card["architecture"], in_channels=card["in_channels"], num_classes=card["num_classes"],
                          **network_kwargs(card.get("architecture_kwargs", {})))
    try:
        network.load_state_dict(load_state_dict(card))
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:200]  # torch lists every key on many lines: keep one line
        raise ModelError(f"Weights of '{card['name']}' do not fit architecture '{card['architecture']}' ({reason})",
                         "the card and the weights file do not belong together: re-export the model") from None
    network.to(device).eval()
    return LoadedModel(network, card, device)


def save_model_package(model: Any, card: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``NAME.safetensors`` and ``NAME.json`` (with the weights' SHA-256) atomically; return the card path."""
    from safetensors.torch import save_file

    missing = [k for k in REQUIRED_CARD_KEYS if k not in card and k != "sha256"]
    if missing:
        raise ModelError(f"Model card lacks {', '.join(missing)}", "fill them in before saving")
    out_dir = Path(out_dir)
    name = card["name"]
    weights = out_dir / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    card = {k: v for k, v in card.items() if not k.startswith("_")}
    card.update(weights_file=weights.name, sha256=sha256_file(weights), version=card.get("version", 1))
    card_path = out_dir / f"{name}.json"
    with atomic_path(card_path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card_path
