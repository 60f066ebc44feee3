"""Training config validation: refusals that name the problem and the fix, before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungseg_core.errors import InputError
from lungseg_core.models.registry import ARCHITECTURES
from lungseg_core.training.config import load_config, trainable_architectures

RECIPE = Path(__file__).resolve().parents[3] / "configs" / "seed5_unet_lungs.json"
THREE_D = sorted(name for name, info in ARCHITECTURES.items() if info.spatial_dims == 3)


def test_trainable_architectures_are_the_2d_ones():
    assert THREE_D and not set(THREE_D) & set(trainable_architectures())
    assert {"unet", "resunet", "deeplabv3plus_resnet50"} <= set(trainable_architectures())


@pytest.mark.parametrize("name", THREE_D)
def test_3d_architecture_is_refused_with_the_fix(name):
    # a missing data folder too: the architecture is refused at load time, before any data would be read
    overrides = {"architecture": name, "data": [{"root": "/nonexistent/lungseg-data"}]}
    with pytest.raises(InputError) as info:
        load_config(RECIPE, overrides)
    message = str(info.value)
    assert f"'{name}'" in message and "3D" in message and "2D" in message
    assert all(choice in message for choice in trainable_architectures())  # what trains here instead
    assert "--lung-model" in message  # how a 3D model is used: as a model package at inference


def test_unknown_architecture_lists_only_trainable_ones():
    with pytest.raises(InputError) as info:
        load_config(RECIPE, {"architecture": "vnet"})
    message = str(info.value)
    assert "Config key 'architecture' is 'vnet'" in message and "resunet" in message
    assert not any(name in message for name in THREE_D)
