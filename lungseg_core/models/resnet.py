"""ResNet-50/101 encoders (He et al. 2016, the "v1.5" variant with the stride on the 3x3 conv).

Module and parameter names copy torchvision's ``torchvision.models.resnet`` exactly (``conv1``, ``bn1``,
``layer1``..``layer4``, ``Bottleneck.conv1..bn3``, ``downsample.0/1``, optional ``fc``) so a torchvision
ImageNet checkpoint a user already has on disk loads with ``load_state_dict``; see ``pretrained.py``.
torchvision itself is not a dependency.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# Blocks per stage, as in torchvision.
RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride / dilation) -> 1x1 expand x4, plus the shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet. Without ``num_classes`` it is an encoder whose ``forward`` returns 5 feature maps.

    Features (strides 2, 4, 8, 16, 32; channels ``out_channels``): the stem after ReLU (before max-pool),
    then layer1..layer4. ``replace_stride_with_dilation`` keeps resolution in layer2..4 (DeepLab's output
    stride 16 or 8), exactly like torchvision's argument of the same name.
    """

    input_conv_key = "conv1.weight"

    def __init__(
        self,
        layers: Sequence[int],
        in_channels: int = 3,
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
        num_classes: int | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        dilate = list(replace_stride_with_dilation)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(256, layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(512, layers[3], stride=2, dilate=dilate[2])
        self.out_channels = (64, 256, 512, 1024, 2048)
        self.output_stride = 32 // 2 ** sum(bool(d) for d in dilate)
        self.checkpoint_hint = f"torchvision resnet{3 * sum(layers) + 2} ImageNet checkpoint"
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        self._init_weights()

    @staticmethod
    def checkpoint_key(key: str) -> str | None:
        """Our names are torchvision's; its classifier ``fc`` is not part of an encoder."""
        return None if key.startswith("fc.") else key

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:  # trade the stride for dilation from the next block on (torchvision's logic)
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        blocks_list = [Bottleneck(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        blocks_list += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*blocks_list)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        c1 = self.layer1(self.maxpool(stem))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [stem, c1, c2, c3, c4]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        features = self.forward_features(x)
        if not hasattr(self, "fc"):
            return features
        return self.fc(torch.flatten(self.avgpool(features[-1]), 1))


def resnet(depth: int, in_channels: int = 3, **kwargs) -> ResNet:
    if depth not in RESNET_LAYERS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}, got {depth}")
    return ResNet(RESNET_LAYERS[depth], in_channels=in_channels, **kwargs)


def resnet50(in_channels: int = 3, **kwargs) -> ResNet:
    return resnet(50, in_channels, **kwargs)


def resnet101(in_channels: int = 3, **kwargs) -> ResNet:
    return resnet(101, in_channels, **kwargs)
