"""DeepLabV3+ with a ResNet-50 backbone (Chen et al. 2018), the seed 5 recipe.

Backbone at output stride 16 (layer4 dilated instead of strided), ASPP with a 1x1 branch, three 3x3
atrous branches (rates 6/12/18) and image pooling; the decoder upsamples the ASPP output x4, concatenates
layer1's features reduced to 48 channels, refines with two 3x3 convs and upsamples bilinearly to the input.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lungseg_core.models.blocks import ConvNormAct, check_divisible, init_weights
from lungseg_core.models.pretrained import load_encoder_weights
from lungseg_core.models.resnet import resnet

# Rates are defined for output stride 16; at stride 8 the paper doubles them.
_DILATE_FOR_STRIDE = {16: (False, False, True), 8: (False, True, True)}


class ASPPPooling(nn.Module):
    """Image-level features: global average -> 1x1 conv -> ReLU -> broadcast back to the map size.

    No BatchNorm here (torchvision has one): on a 1x1 map it fails for batch size 1 in training, which is
    the usual batch for large CT slices. The conv has a bias instead.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.relu(self.conv(self.pool(x)))
        return pooled.expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    def __init__(self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = (6, 12, 18),
                 dropout: float = 0.1):
        super().__init__()
        branches: list[nn.Module] = [ConvNormAct(in_channels, out_channels, kernel_size=1)]
        branches += [ConvNormAct(in_channels, out_channels, kernel_size=3, dilation=r) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            ConvNormAct(len(branches) * out_channels, out_channels, kernel_size=1), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DeepLabV3Plus(nn.Module):
    """``encoder_weights``: path of a local torchvision ResNet-50 ImageNet checkpoint (optional)."""

    size_divisor = 16

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        output_stride: int = 16,
        atrous_rates: Sequence[int] = (6, 12, 18),
        aspp_channels: int = 256,
        low_level_channels: int = 48,
        encoder_depth: int = 50,
        encoder_weights: str | os.PathLike | None = None,
    ):
        super().__init__()
        if output_stride not in _DILATE_FOR_STRIDE:
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.size_divisor = output_stride
        self.encoder = resnet(
            encoder_depth, in_channels, replace_stride_with_dilation=_DILATE_FOR_STRIDE[output_stride]
        )
        low_in, high_in = self.encoder.out_channels[1], self.encoder.out_channels[-1]
        self.aspp = ASPP(high_in, aspp_channels, atrous_rates)
        self.low_level = ConvNormAct(low_in, low_level_channels, kernel_size=1)
        self.decoder = nn.Sequential(
            ConvNormAct(aspp_channels + low_level_channels, 256),
            ConvNormAct(256, 256),
        )
        self.classifier = nn.Conv2d(256, num_classes, kernel_size=1)
        for part in (self.aspp, self.low_level, self.decoder, self.classifier):
            init_weights(part)
        self.missing_encoder_keys: list[str] = []
        if encoder_weights is not None:
            self.missing_encoder_keys = load_encoder_weights(self.encoder, encoder_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x.shape, self.size_divisor, type(self).__name__)
        input_size = x.shape[-2:]
        _, layer1, _, _, layer4 = self.encoder.forward_features(x)
        high = F.interpolate(self.aspp(layer4), size=layer1.shape[-2:], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([high, self.low_level(layer1)], dim=1))
        return F.interpolate(self.classifier(x), size=input_size, mode="bilinear", align_corners=False)
