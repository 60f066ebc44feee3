"""ResUNet: our compact residual U-Net for 2.5D input (3 or 5 adjacent CT slices as channels).

Why this shape: lungs and infection are large, smooth structures, so the network needs a wide receptive
field (4 downsamplings: 16x at the bottleneck) but few filters; residual blocks train reliably from scratch
without ImageNet weights; strided convs downsample inside the blocks (no separate pooling stage); widths are
capped (``max_filters``) because the deepest levels hold most parameters but little of the compute.
Defaults (24 base filters: 24-48-96-192-256) give 3.5 M parameters and ~6.9 GMAC per 256x256 slice; each
resolution level costs about the same compute, so the base width is the main speed knob.
GroupNorm by default so training with batches of 2-4 slices behaves the same as inference.
"""

from __future__ import annotations

import torch
from torch import nn

from lungseg_core.models.blocks import ResidualBlock, PooledDepth, init_weights


class ResUNet(PooledDepth, nn.Module):
    """Input (N, in_channels, H, W), H and W multiples of ``2**depth``; output logits (N, classes, H, W)."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        base_filters: int = 24,
        depth: int = 4,
        max_filters: int = 256,
        norm: str = "group",
    ):
        super().__init__()
        self.depth = depth
        widths = [min(base_filters * 2**level, max_filters) for level in range(depth + 1)]

        self.stem = ResidualBlock(in_channels, widths[0], norm=norm)
        self.encoders = nn.ModuleList(
            ResidualBlock(widths[level], widths[level + 1], stride=2, norm=norm) for level in range(depth)
        )
        # Decoder, deepest first: 2x2 transposed conv to the skip's width, concatenate, residual block.
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2))
            self.decoders.append(ResidualBlock(2 * widths[level], widths[level], norm=norm))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(x)
        x = self.stem(x)
        skips = [x]
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return self.head(x)
