"""Whole-volume slice prediction: test-time mirroring."""

from __future__ import annotations

import numpy as np
import torch

from lungseg_core.inference.network import predict_labels
from lungseg_core.io.volume import Volume


class _SideBiasedNetwork(torch.nn.Module):
    """Foreground where the image is bright, pushed up on the image's right side: a side-dependent error."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-1.0, 1.0, x.shape[-1]).expand_as(x[:, :1])
        foreground = 6.0 * (x[:, :1] - 0.5) + ramp
        return torch.cat([torch.zeros_like(foreground), foreground], dim=1)


def _symmetric_volume() -> Volume:
    yy, xx = np.mgrid[:32, :32]
    image = 255.0 * (1.0 - np.abs(xx - 15.5) / 16.0) * np.ones_like(yy)  # bright in the middle, symmetric
    return Volume(np.stack([image, image]), intensity="display")


def test_mirroring_removes_a_side_dependent_error():
    spec = {"size": 32, "context": 0, "window": [0, 255], "crop_to_body": False}
    volume = _symmetric_volume()
    plain = predict_labels(_SideBiasedNetwork(), volume, spec, "cpu", kind="display")
    mirrored = predict_labels(_SideBiasedNetwork(), volume, spec, "cpu", kind="display", mirror=True)
    assert not np.array_equal(plain, plain[..., ::-1])  # the bias shifts the foreground to one side
    np.testing.assert_array_equal(mirrored, mirrored[..., ::-1])  # mirrored: symmetric image, symmetric labels
    assert 0 < mirrored.sum() < mirrored.size
