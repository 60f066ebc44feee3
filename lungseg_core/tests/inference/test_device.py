"""Device choice: a GPU that is not there is a clear error naming the CPU fallback, never a crash."""

from __future__ import annotations

import pytest
import torch

from lungseg_core.errors import ModelError
from lungseg_core.inference.device import resolve_device


def test_cuda_requested_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for request in ("cuda", "cuda:0", "CUDA"):
        with pytest.raises(ModelError, match="--device cpu"):
            resolve_device(request)
    assert resolve_device("auto").type in ("cpu", "mps")  # auto falls back quietly


def test_gpu_number_beyond_the_gpus_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ModelError, match="GPU 3 was requested but PyTorch sees 1 GPU"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0").index == 0


@pytest.mark.parametrize("request_", ["tpu", "cuda:x", "gpu"])
def test_unknown_device_names(request_, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the name is checked whatever the hardware
    with pytest.raises(ModelError, match="Unknown device"):
        resolve_device(request_)
