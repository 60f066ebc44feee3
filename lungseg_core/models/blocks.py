"""Small building blocks shared by the architectures: conv + norm + activation, double conv, residual block.

Every block takes ``spatial_dims`` (2 or 3) so the 2D and 3D networks are written once. Convolutions that are
followed by a normalisation layer carry no bias: the norm's own shift makes it redundant.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMS = ("batch", "group", "instance")


def conv_type(spatial_dims: int) -> type[nn.Module]:
    return {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def conv_transpose_type(spatial_dims: int) -> type[nn.Module]:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial_dims]


def max_pool_type(spatial_dims: int) -> type[nn.Module]:
    return {2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims]


def group_count(channels: int, max_groups: int = 8) -> int:
    """The largest divisor of ``channels`` not above ``max_groups`` (GroupNorm needs an exact split)."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def norm_layer(kind: str, channels: int, spatial_dims: int = 2) -> nn.Module:
    """``batch`` (seed recipes), ``group`` (batch-size independent: small 2.5D / 3D batches), ``instance``."""
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims](channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims](channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}; use one of {', '.join(NORMS)}")


class ConvNormAct(nn.Sequential):
    """conv (bias-free, 'same' padding) -> norm -> ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "batch",
        spatial_dims: int = 2,
    ):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            conv_type(spatial_dims)(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False
            ),
            norm_layer(norm, out_channels, spatial_dims),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """The classic U-Net stage: two 3x3 conv + norm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch", spatial_dims: int = 2):
        super().__init__(
            ConvNormAct(in_channels, out_channels, norm=norm, spatial_dims=spatial_dims),
            ConvNormAct(out_channels, out_channels, norm=norm, spatial_dims=spatial_dims),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 conv + norm with an identity (or 1x1 projection) shortcut, ReLU after the sum (ResNet basic block).

    ``stride=2`` downsamples inside the block, which is cheaper than a separate pooling + conv stage.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "batch", spatial_dims: int = 2
    ):
        super().__init__()
        conv = conv_type(spatial_dims)
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_layer(norm, out_channels, spatial_dims)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = norm_layer(norm, out_channels, spatial_dims)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, out_channels, 1, stride=stride, bias=False),
                norm_layer(norm, out_channels, spatial_dims),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions (ReLU networks), unit-scale norms; the torchvision / nnU-Net default."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm2d, nn.InstanceNorm3d)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class PooledDepth:
    """Mixin for encoder-decoders that halve the input ``depth`` times: inputs must divide by 2**depth."""

    depth: int

    @property
    def size_divisor(self) -> int:
        return 2**self.depth

    def check_input_size(self, x: torch.Tensor) -> None:
        check_divisible(x.shape, self.size_divisor, type(self).__name__)


def check_divisible(shape: torch.Size, divisor: int, name: str) -> None:
    """Fail early with a clear message instead of a cryptic size mismatch deep in the decoder."""
    spatial = tuple(shape[2:])
    if any(s % divisor for s in spatial):
        padded = tuple(math.ceil(s / divisor) * divisor for s in spatial)
        raise ValueError(
            f"{name} needs spatial size a multiple of {divisor}, got {spatial}; pad the input to {padded}"
        )
