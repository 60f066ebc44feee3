"""SegNet (Badrinarayanan et al. 2017), the seed 3 recipe: 4 encoder and 4 decoder levels, 64 base filters.

SegNet's point is memory: instead of concatenating encoder feature maps (U-Net), each decoder level
upsamples with ``MaxUnpool2d`` using the argmax *indices* saved by the matching ``MaxPool2d``, which puts
values back where the maxima were and keeps boundaries sharp at the cost of a few bytes per pooled pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from lungseg_core.models.blocks import ConvNormAct, PooledDepth, init_weights


def _stage(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    layers = [ConvNormAct(in_channels, out_channels)]
    layers += [ConvNormAct(out_channels, out_channels) for _ in range(convs - 1)]
    return nn.Sequential(*layers)


class SegNet(PooledDepth, nn.Module):
    """Encoder levels 64-128-256-512 (2 conv each); the decoder mirrors them and unpools with the indices."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3, base_filters: int = 64, depth: int = 4,
                 convs_per_level: int = 2):
        super().__init__()
        widths = [base_filters * 2**level for level in range(depth)]
        self.depth = depth

        self.encoders = nn.ModuleList()
        self.pools = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(_stage(previous, width, convs_per_level))
            self.pools.append(nn.MaxPool2d(2, stride=2, return_indices=True))
            previous = width

        # Decoder level i (deepest first): unpool at width w_i, convs ending at the next shallower width.
        self.unpools = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            width = widths[level]
            out_width = widths[level - 1] if level > 0 else widths[0]
            self.unpools.append(nn.MaxUnpool2d(2, stride=2))
            self.decoders.append(
                nn.Sequential(_stage(width, width, convs_per_level - 1), ConvNormAct(width, out_width))
                if convs_per_level > 1
                else ConvNormAct(width, out_width)
            )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=3, padding=1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(x)
        pooled: list[tuple[torch.Tensor, torch.Size]] = []
        for encoder, pool in zip(self.encoders, self.pools):
            x = encoder(x)
            size = x.shape
            x, indices = pool(x)
            pooled.append((indices, size))
        for unpool, decoder, (indices, size) in zip(self.unpools, self.decoders, reversed(pooled)):
            x = decoder(unpool(x, indices, output_size=size))
        return self.head(x)
