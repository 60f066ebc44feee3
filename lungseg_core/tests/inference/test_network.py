"""Whole-volume slice prediction: test-time mirroring, predicting chosen planes only."""

from __future__ import annotations

import numpy as np
import pytest
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


@pytest.mark.parametrize("mirror", [False, True])
def test_progress_runs_once_from_start_to_end_with_or_without_the_mirror_pass(mirror):
    spec = {"size": 32, "context": 0, "window": [0, 255], "crop_to_body": False}
    volume = Volume(np.concatenate([_symmetric_volume().array] * 4), intensity="display")  # 8 slices, 4 batches
    seen: list[float] = []
    predict_labels(_SideBiasedNetwork(), volume, spec, "cpu", batch_size=2, progress=lambda f, _m: seen.append(f),
                   kind="display", mirror=mirror)
    assert len(seen) == (8 if mirror else 4)
    assert seen == sorted(seen) and seen[-1] == 1.0

def test_only_the_chosen_planes_are_predicted_those_between_interpolated_the_others_background():
    spec = {"size": 32, "context": 0, "window": [0, 255], "crop_to_body": False}
    image = _symmetric_volume().array[0]
    dim = np.where(image > 128, 150.0, image)  # a plane whose bright middle is narrower
    volume = Volume(np.stack([image, image, dim, image, image, image]), intensity="display")
    every = predict_labels(_SideBiasedNetwork(), volume, spec, "cpu", kind="display")
    chosen = predict_labels(_SideBiasedNetwork(), volume, spec, "cpu", kind="display", planes=np.array([1, 4]))
    assert every.any(axis=(1, 2)).all() and not np.array_equal(every[2], every[1])
    np.testing.assert_array_equal(chosen[[1, 2, 3, 4]], every[[1, 1, 1, 4]])  # 2 and 3: between two like planes
    assert not chosen[[0, 5]].any()
