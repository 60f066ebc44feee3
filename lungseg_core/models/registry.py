"""One registry of network architectures: name -> how to build it and what input it expects.

Inference pads inputs to ``size_divisor`` and feeds ``spatial_dims``-D tensors; training configs and model
cards refer to architectures by these names only.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, Callable, Mapping

from torch import nn

from lungseg_core.errors import ModelError
from lungseg_core.models.deeplab import DeepLabV3Plus
from lungseg_core.models.efficientnet import LITE_DECODER_CHANNELS, EfficientUNet
from lungseg_core.models.residual_unet import ResUNet
from lungseg_core.models.resnet_unet import DECODER_CHANNELS, ResNetUNet
from lungseg_core.models.segnet import SegNet
from lungseg_core.models.unet import UNet
from lungseg_core.models.unet3d import UNet3D


@dataclass(frozen=True)
class ArchitectureInfo:
    name: str
    description: str
    source: str  # the paper and seed recipe it follows
    spatial_dims: int  # 2: input (N, C, H, W); 3: input (N, C, D, H, W)
    size_divisor: int  # every spatial input size must be a multiple of it (with the default kwargs; a built
    # model's own ``size_divisor`` attribute is exact for other kwargs, e.g. a shallower depth)
    default_kwargs: Mapping[str, Any] = field(default_factory=dict)
    builder: Callable[..., nn.Module] = field(default=UNet, repr=False, compare=False)


def _info(builder: Callable[..., nn.Module], **kwargs: Any) -> ArchitectureInfo:
    kwargs["default_kwargs"] = MappingProxyType(dict(kwargs.get("default_kwargs", {})))
    return ArchitectureInfo(builder=builder, **kwargs)


def _lite_unet(variant: int, encoder: str) -> ArchitectureInfo:
    """The U-Net on EfficientNet-Lite ``variant``: the variants differ only in their encoder."""
    return _info(
        EfficientUNet,
        name=f"efficientnet_lite{variant}_unet",
        description=f"U-Net decoder (128-64-32-24-16) on {encoder}; optional ImageNet encoder weights",
        source="Tan & Le 2019, EfficientNet (Lite variant) + Ronneberger et al. 2015",
        spatial_dims=2,
        size_divisor=32,
        default_kwargs={"decoder_channels": LITE_DECODER_CHANNELS, "encoder_weights": None, "variant": variant},
    )


_INFOS = [
    _info(
        UNet,
        name="unet",
        description="2D U-Net, 3 levels of 64-128-256 filters + 512 bottleneck, double conv + BN + ReLU, "
        "transposed-conv upsampling, concatenated skips (7.7 M parameters)",
        source="Ronneberger et al. 2015, U-Net; seed 1",
        spatial_dims=2,
        size_divisor=8,
        default_kwargs={"base_filters": 64, "depth": 3},
    ),
    _info(
        SegNet,
        name="segnet",
        description="2D SegNet, 4 encoder + 4 decoder levels of 64-128-256-512 filters; the decoder unpools "
        "with the encoder's max-pool indices (no skip concatenation)",
        source="Badrinarayanan et al. 2017, SegNet; seed 3",
        spatial_dims=2,
        size_divisor=16,
        default_kwargs={"base_filters": 64, "depth": 4},
    ),
    _info(
        partial(ResNetUNet, encoder_depth=50),
        name="resnet50_unet",
        description="U-Net decoder (256-128-64-32-16) on a torchvision-compatible ResNet-50 encoder; "
        "optional local ImageNet encoder weights",
        source="Ronneberger et al. 2015 + He et al. 2016; seed 2",
        spatial_dims=2,
        size_divisor=32,
        default_kwargs={"decoder_channels": DECODER_CHANNELS, "encoder_weights": None},
    ),
    _info(
        partial(ResNetUNet, encoder_depth=101),
        name="resnet101_unet",
        description="U-Net decoder (256-128-64-32-16) on a torchvision-compatible ResNet-101 encoder; "
        "optional local ImageNet encoder weights",
        source="Ronneberger et al. 2015 + He et al. 2016; seed 4",
        spatial_dims=2,
        size_divisor=32,
        default_kwargs={"decoder_channels": DECODER_CHANNELS, "encoder_weights": None},
    ),
    _info(
        DeepLabV3Plus,
        name="deeplabv3plus_resnet50",
        description="DeepLabV3+ on ResNet-50 at output stride 16: ASPP (rates 6/12/18 + image pooling), "
        "layer1 low-level features, decoder, bilinear upsampling; optional local ImageNet encoder weights",
        source="Chen et al. 2018, DeepLabV3+; seed 5",
        spatial_dims=2,
        size_divisor=16,
        default_kwargs={"output_stride": 16, "atrous_rates": (6, 12, 18), "encoder_weights": None},
    ),
    _lite_unet(0, "an EfficientNet-Lite0 encoder (inverted residuals, ReLU6, no squeeze-excitation; 3.8 M parameters)"),
    _lite_unet(2, "an EfficientNet-Lite2 encoder (Lite0 widened 1.1x and deepened 1.2x; 5.2 M parameters)"),
    _info(
        ResUNet,
        name="resunet",
        description="Compact residual U-Net for 2.5D input (3 or 5 adjacent slices as channels): 4 "
        "downsamplings, 24-48-96-192-256 filters, GroupNorm (3.5 M parameters); the shipped default candidate",
        source="LungSegAI; residual blocks after He et al. 2016 on a U-Net layout",
        spatial_dims=2,
        size_divisor=16,
        default_kwargs={"base_filters": 24, "depth": 4, "max_filters": 256, "norm": "group"},
    ),
    _info(
        UNet3D,
        name="unet3d",
        description="Small 3D U-Net for patches: 16-32-64 filters + 128 bottleneck, InstanceNorm",
        source="Cicek et al. 2016, 3D U-Net; nnU-Net-style InstanceNorm",
        spatial_dims=3,
        size_divisor=8,
        default_kwargs={"base_filters": 16, "depth": 3, "norm": "instance"},
    ),
]

ARCHITECTURES: dict[str, ArchitectureInfo] = {info.name: info for info in _INFOS}


def network_kwargs(architecture_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The options that shape the network: ``encoder_weights`` is where training starts, not part of the
    network, so a model card leaves it out and a trained model loads where that checkpoint is absent."""
    return {k: v for k, v in architecture_kwargs.items() if k != "encoder_weights"}


def list_architectures() -> list[str]:
    return sorted(ARCHITECTURES)


def _accepted_kwargs(builder: Callable[..., nn.Module]) -> list[str]:
    target = builder.func if isinstance(builder, partial) else builder
    fixed = builder.keywords if isinstance(builder, partial) else {}
    params = inspect.signature(target).parameters
    return [p for p in params if p not in ("self", "in_channels", "num_classes") and p not in fixed]


def build_model(architecture: str, in_channels: int = 1, num_classes: int = 3, **kwargs: Any) -> nn.Module:
    """A freshly initialised network: input (N, in_channels, *spatial) -> logits (N, num_classes, *spatial)."""
    info = ARCHITECTURES.get(architecture)
    if info is None:
        raise ModelError(
            f"Unknown architecture {architecture!r}", f"use one of: {', '.join(list_architectures())}"
        )
    for label, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{label} must be a positive integer, got {value!r}", f"fix {label} in the config")
    accepted = _accepted_kwargs(info.builder)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ModelError(
            f"Architecture {architecture!r} has no option(s) {', '.join(unknown)}",
            f"use only: {', '.join(accepted)}",
        )
    options = {**info.default_kwargs, **kwargs}
    try:
        return info.builder(in_channels=in_channels, num_classes=num_classes, **options)
    except ValueError as exc:  # invalid option values (depth < 1, unknown norm, output stride 12, ...)
        raise ModelError(f"Invalid options for {architecture!r}: {exc}", "fix the model options") from exc
