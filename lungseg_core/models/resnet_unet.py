"""U-Net decoder on a ResNet-50/101 encoder (seeds 2 and 4; the segmentation_models_pytorch ``Unet`` layout).

The encoder gives 5 feature maps at strides 2..32; each decoder block upsamples x2 (nearest), concatenates
the encoder map of that resolution and applies two 3x3 conv + BN + ReLU. Decoder widths 256-128-64-32-16;
the last block reaches full resolution without a skip. Input H, W must be multiples of 32.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from lungseg_core.models.blocks import DoubleConv, check_divisible, init_weights
from lungseg_core.models.pretrained import load_encoder_weights
from lungseg_core.models.resnet import resnet

DECODER_CHANNELS = (256, 128, 64, 32, 16)


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.convs = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class EncoderUNet(nn.Module):
    """U-Net decoder on any encoder whose ``forward_features`` gives 5 maps at strides 2..32.

    ``encoder_weights``: path of a local ImageNet checkpoint for the encoder (optional; ``pretrained.py``).
    """

    size_divisor = 32

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        decoder_channels: tuple[int, ...],
        encoder_weights: str | os.PathLike | None = None,
    ):
        super().__init__()
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels needs 5 widths (strides 16..1), got {decoder_channels}")
        self.encoder = encoder
        # Skips for decoder blocks 0..4: the maps at strides 16, 8, 4, 2, then none.
        skip_channels = list(reversed(self.encoder.out_channels[:-1])) + [0]
        in_widths = [self.encoder.out_channels[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(in_widths, skip_channels, decoder_channels)
        )
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=3, padding=1)
        init_weights(self.decoder)
        init_weights(self.head)
        self.missing_encoder_keys: list[str] = []
        if encoder_weights is not None:
            self.missing_encoder_keys = load_encoder_weights(self.encoder, encoder_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x.shape, self.size_divisor, type(self).__name__)
        *skips, x = self.encoder.forward_features(x)
        for block, skip in zip(self.decoder, [*reversed(skips), None]):
            x = block(x, skip)
        return self.head(x)


class ResNetUNet(EncoderUNet):
    """``encoder_weights``: path of a local torchvision ImageNet checkpoint for the encoder (optional)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        encoder_depth: int = 50,
        decoder_channels: tuple[int, ...] = DECODER_CHANNELS,
        encoder_weights: str | os.PathLike | None = None,
    ):
        super().__init__(resnet(encoder_depth, in_channels), num_classes, decoder_channels, encoder_weights)
