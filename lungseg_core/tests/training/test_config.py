"""Training config validation: refusals that name the problem and the fix, before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungseg_core.errors import InputError
from lungseg_core.models.registry import ARCHITECTURES
from lungseg_core.training.config import TrainConfig, load_config, trainable_architectures

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


def test_scheduler_keys_left_over_from_another_scheduler_are_refused_before_data_is_read():
    # the recipe's plateau keys stay when only the scheduler is switched on the command line
    overrides = {"scheduler": "cosine", "data": [{"root": "/nonexistent/lungseg-data"}]}
    with pytest.raises(InputError) as info:
        load_config(RECIPE, overrides)
    message = str(info.value)
    assert "factor, patience" in message and "'cosine'" in message
    assert "T_max, eta_min" in message and "--set 'scheduler_kwargs={}'" in message


def test_each_scheduler_gets_its_own_defaults_and_builds():
    torch = pytest.importorskip("torch")
    from lungseg_core.training.trainer import build_scheduler

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    plateau_keys = {"factor": 0.5, "patience": 2}
    base = {k: v for k, v in load_config(RECIPE).to_dict().items() if k != "scheduler_kwargs"}
    cosine = TrainConfig.from_dict({**base, "scheduler": "cosine", "epochs": 7})
    assert cosine.scheduler_kwargs == {}
    assert build_scheduler(cosine, optimizer).T_max == 7
    plateau = TrainConfig.from_dict({**base, "scheduler": "plateau"})
    assert plateau.scheduler_kwargs == plateau_keys
    assert build_scheduler(plateau, optimizer).factor == 0.5
    # a run saved when every config got the plateau keys still matches its config without a scheduler
    saved_none = TrainConfig.from_dict({**base, "scheduler": "none", "scheduler_kwargs": plateau_keys})
    assert saved_none.scheduler_kwargs == {} == TrainConfig.from_dict({**base, "scheduler": "none"}).scheduler_kwargs
    assert build_scheduler(saved_none, optimizer) is None
