"""Loading a local torchvision-style ImageNet checkpoint into the ResNet encoders (never downloading)."""

from __future__ import annotations

import socket

import pytest
import torch
from torch import nn

from lungseg_core.errors import ModelError
from lungseg_core.models import build_model, load_encoder_weights
from lungseg_core.models.resnet import resnet50


def torchvision_resnet_state(layers: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's ResNet (Bottleneck) names and shapes, written from its spec."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    def bn(prefix: str, channels: int) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.weight": rand(channels), f"{prefix}.bias": rand(channels),
            f"{prefix}.running_mean": rand(channels), f"{prefix}.running_var": rand(channels).abs() + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(7),
        }

    state = {"conv1.weight": rand(64, 3, 7, 7), **bn("bn1", 64)}
    inplanes = 64
    for stage, blocks in enumerate(layers, start=1):
        planes = 64 * 2 ** (stage - 1)
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            state.update({f"{p}.conv1.weight": rand(planes, inplanes, 1, 1), **bn(f"{p}.bn1", planes),
                          f"{p}.conv2.weight": rand(planes, planes, 3, 3), **bn(f"{p}.bn2", planes),
                          f"{p}.conv3.weight": rand(4 * planes, planes, 1, 1), **bn(f"{p}.bn3", 4 * planes)})
            if block == 0:
                state.update({f"{p}.downsample.0.weight": rand(4 * planes, inplanes, 1, 1),
                              **bn(f"{p}.downsample.1", 4 * planes)})
            inplanes = 4 * planes
    state.update({"fc.weight": rand(1000, 2048), "fc.bias": rand(1000)})
    return state


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    state = torchvision_resnet_state((3, 4, 6, 3))
    assert len(state) == 320  # torchvision's resnet50 state dict size
    return state


@pytest.fixture(scope="module")
def checkpoint(imagenet_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50-imagenet.pth"
    torch.save(imagenet_state, path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_three_channel_encoder_gets_the_exact_values(checkpoint, imagenet_state, no_network):
    encoder = resnet50(in_channels=3)
    assert load_encoder_weights(encoder, checkpoint) == []
    loaded = encoder.state_dict()
    for key in ("conv1.weight", "layer4.2.bn3.running_var", "layer1.0.downsample.0.weight", "layer3.5.conv2.weight"):
        assert torch.equal(loaded[key], imagenet_state[key]), key


def test_one_channel_model_adapts_conv1(checkpoint, imagenet_state, no_network):
    model = build_model("resnet50_unet", in_channels=1, encoder_weights=str(checkpoint))
    assert model.missing_encoder_keys == []
    conv1 = model.encoder.conv1.weight.detach()
    rgb = imagenet_state["conv1.weight"]
    assert conv1.shape == (64, 1, 7, 7)
    # A grey image fed through the adapted filter responds like the same grey image in all three RGB channels.
    torch.testing.assert_close(conv1[:, 0], rgb.sum(dim=1))
    grey = torch.randn(1, 1, 16, 16)
    torch.testing.assert_close(
        nn.functional.conv2d(grey, conv1), nn.functional.conv2d(grey.repeat(1, 3, 1, 1), rgb), rtol=1e-4, atol=1e-4
    )
    assert torch.equal(model.encoder.layer4[2].bn3.running_var, imagenet_state["layer4.2.bn3.running_var"])


def test_five_channel_deeplab_and_safetensors(imagenet_state, tmp_path, no_network):
    from safetensors.torch import save_file

    path = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in imagenet_state.items() if not k.startswith("fc.")}, str(path))
    model = build_model("deeplabv3plus_resnet50", in_channels=5, encoder_weights=path)
    conv1 = model.encoder.conv1.weight.detach()
    assert conv1.shape == (64, 5, 7, 7)
    torch.testing.assert_close(conv1.sum(dim=1), imagenet_state["conv1.weight"].sum(dim=1))
    torch.testing.assert_close(conv1[:, 0], conv1[:, 4])
    assert torch.equal(model.encoder.layer2[0].bn1.weight, imagenet_state["layer2.0.bn1.weight"])


def test_wrapped_checkpoint_and_missing_key_report(imagenet_state, tmp_path):
    partial = {f"module.{k}": v for k, v in imagenet_state.items() if k != "layer4.2.bn3.running_var"}
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": partial, "epoch": 3}, path)
    missing = load_encoder_weights(build_model("resnet50_unet", in_channels=3), path)
    assert missing == ["layer4.2.bn3.running_var"]


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        build_model("resnet50_unet", encoder_weights=tmp_path / "nope.pth")


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelError, match="not a state dict"):
        load_encoder_weights(resnet50(), path)


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), path)  # a whole pickled model: weights_only refuses to run its code
    with pytest.raises(ModelError, match="state dict"):
        load_encoder_weights(resnet50(), path)


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "deeper_resnet.pth"  # one more layer3 block, like resnet101's layer3.6.. (but smaller)
    torch.save(torchvision_resnet_state((3, 4, 7, 3)), path)
    with pytest.raises(ModelError, match="different architecture"):
        load_encoder_weights(build_model("resnet50_unet"), path)
    unrelated = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, unrelated)
    with pytest.raises(ModelError, match="different architecture"):
        load_encoder_weights(resnet50(), unrelated)


def test_model_without_resnet_encoder(checkpoint):
    with pytest.raises(ModelError, match="no ResNet or EfficientNet encoder"):
        load_encoder_weights(build_model("unet"), checkpoint)
