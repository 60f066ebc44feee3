"""A small 3D U-Net for patch-wise training and sliding-window inference on CT sub-volumes.

Same topology as the 2D seed U-Net, but 16 base filters (16-32-64 + 128 bottleneck, ~1.4 M parameters)
and InstanceNorm: 3D patches make batches of 1-2, where BatchNorm statistics are noise (nnU-Net's choice).
"""

from __future__ import annotations

from lungseg_core.models.unet import UNet


class UNet3D(UNet):
    """Input (N, C, D, H, W) with D, H, W multiples of ``2**depth``; output logits (N, classes, D, H, W)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        base_filters: int = 16,
        depth: int = 3,
        norm: str = "instance",
    ):
        super().__init__(in_channels, num_classes, base_filters, depth, norm, spatial_dims=3)
