"""The plain U-Net of seed 1 (Ronneberger et al. 2015), written for 2D or 3D.

Seed recipe: 3 encoder levels of 64-128-256 filters and a 512-filter bottleneck; each stage is two 3x3 conv
+ BatchNorm + ReLU; 2x2 max-pool down, 2x2 transposed conv up, skip connections concatenated.
"""

from __future__ import annotations

import torch
from torch import nn

from lungseg_core.models.blocks import (
    DoubleConv,
    PooledDepth,
    conv_transpose_type,
    conv_type,
    init_weights,
    max_pool_type,
)


class UNet(PooledDepth, nn.Module):
    """U-Net with ``depth`` pooling steps; filters double per level starting from ``base_filters``."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        base_filters: int = 64,
        depth: int = 3,
        norm: str = "batch",
        spatial_dims: int = 2,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        widths = [base_filters * 2**level for level in range(depth + 1)]  # last one is the bottleneck

        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths[:-1]:
            self.encoders.append(DoubleConv(previous, width, norm, spatial_dims))
            previous = width
        self.pool = max_pool_type(spatial_dims)(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], norm, spatial_dims)

        # Decoder, deepest level first: upsample to the skip's width, concatenate, double conv.
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width, deeper in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.ups.append(conv_transpose_type(spatial_dims)(deeper, width, kernel_size=2, stride=2))
            self.decoders.append(DoubleConv(2 * width, width, norm, spatial_dims))
        self.head = conv_type(spatial_dims)(widths[0], num_classes, kernel_size=1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(x)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return self.head(x)
