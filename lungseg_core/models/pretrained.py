"""Load a *local* torchvision-style ImageNet checkpoint into a ResNet encoder. Nothing is ever downloaded.

Accepted files: ``.pth`` / ``.pt`` / ``.bin`` (read with ``torch.load(weights_only=True)``: no pickled code
runs) and ``.safetensors``. The classifier (``fc.*``) is dropped. When the encoder has a different number of
input channels than the checkpoint's RGB ``conv1``, the RGB filters are averaged and repeated, then scaled by
3 / in_channels so a grey image fed to every channel gives the same response as through the RGB filters
(keeps the pretrained BatchNorm statistics valid; timm's ``adapt_input_conv`` does the same).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from lungseg_core.errors import ModelError
from lungseg_core.models.resnet import ResNet

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Wrappers training scripts put around a state dict, and prefixes DataParallel / model wrappers add.
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_PREFIXES = ("module.", "encoder.", "backbone.")
# Below this fraction of the encoder's tensors found in the file, it is not the same architecture.
_MIN_MATCHED = 0.9


def find_encoder(model_or_encoder: nn.Module) -> ResNet:
    """The ResNet inside a segmentation model (its ``encoder`` attribute), or the module itself."""
    if isinstance(model_or_encoder, ResNet):
        return model_or_encoder
    encoder = getattr(model_or_encoder, "encoder", None)
    if isinstance(encoder, ResNet):
        return encoder
    raise ModelError(
        f"{type(model_or_encoder).__name__} has no ResNet encoder to load ImageNet weights into",
        "use encoder_weights only with resnet50_unet, resnet101_unet or deeplabv3plus_resnet50",
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a local checkpoint, unwrapped from common containers and prefixes."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"Encoder weights file not found: {path}",
            "give the path of a local torchvision ResNet checkpoint (.pth or .safetensors); nothing is downloaded",
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(str(path), device="cpu")
        elif suffix in TORCH_SUFFIXES:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ModelError(
                f"Unsupported encoder weights file type {suffix or '(none)'}: {path.name}",
                f"use a {', '.join(TORCH_SUFFIXES)} or .safetensors file",
            )
    except ModelError:
        raise
    except Exception as exc:  # corrupt file, pickled objects refused by weights_only, ...
        raise ModelError(
            f"Cannot read encoder weights {path.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            "save the weights as a plain state dict: torch.save(model.state_dict(), path) or safetensors",
        ) from exc
    return _unwrap(loaded, path)


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in _CONTAINER_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ModelError(
            f"{path.name} is not a state dict (a mapping of parameter names to tensors)",
            "save the weights with torch.save(model.state_dict(), path), not the whole model or an optimizer",
        )
    state = dict(loaded)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(out, 3, k, k) RGB filters -> (out, in_channels, k, k): mean over RGB, repeated, scaled by 3/in."""
    grey = weight.float().mean(dim=1, keepdim=True)
    return (grey.repeat(1, in_channels, 1, 1) * (weight.shape[1] / in_channels)).to(weight.dtype)


def load_encoder_weights(model_or_encoder: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy a local ImageNet ResNet checkpoint into the model's encoder; return the encoder keys it lacked."""
    encoder = find_encoder(model_or_encoder)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    expected = encoder.state_dict()
    name = Path(path).name

    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.ndim == 4 and conv1.shape[1] != encoder.in_channels:
        state["conv1.weight"] = adapt_input_conv(conv1, encoder.in_channels)

    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(k for k in state if k in expected and state[k].shape != expected[k].shape)
    matched = [k for k in expected if k in state and k not in mismatched]
    if unexpected or mismatched or len(matched) < _MIN_MATCHED * len(expected):
        examples = ", ".join((unexpected + mismatched)[:3]) or f"only {len(matched)}/{len(expected)} keys match"
        depth = sum(len(getattr(encoder, f"layer{i}")) for i in range(1, 5)) * 3 + 2
        raise ModelError(
            f"{name} holds weights of a different architecture than this ResNet-{depth} encoder ({examples})",
            f"use a torchvision resnet{depth} ImageNet checkpoint matching the chosen model",
        )
    encoder.load_state_dict(state, strict=False)
    # Old torchvision checkpoints lack the BatchNorm batch counters; they carry no learned information.
    return sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
