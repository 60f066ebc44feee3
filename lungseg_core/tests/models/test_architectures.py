"""Every registered architecture builds, maps (N, C, *S) -> (N, classes, *S) and trains; seed-recipe details."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lungseg_core.errors import ModelError
from lungseg_core.models import ARCHITECTURES, build_model, list_architectures
from lungseg_core.models.resnet import resnet50, resnet101

EXPECTED = {"unet", "segnet", "resnet50_unet", "resnet101_unet", "deeplabv3plus_resnet50", "efficientnet_lite0_unet",
            "efficientnet_lite2_unet", "resunet", "unet3d"}


def _input(name: str, in_channels: int) -> torch.Tensor:
    torch.manual_seed(0)
    spatial = (16, 32, 32) if ARCHITECTURES[name].spatial_dims == 3 else (64, 64)
    return torch.randn(1, in_channels, *spatial)


def test_registry_lists_exactly_the_agreed_names():
    assert set(list_architectures()) == EXPECTED
    assert list_architectures() == sorted(EXPECTED)
    assert {n for n, info in ARCHITECTURES.items() if info.spatial_dims == 3} == {"unet3d"}
    for name, info in ARCHITECTURES.items():
        assert info.name == name and info.description and info.source
    with pytest.raises(Exception):  # frozen: nobody mutates the shared registry by accident
        ARCHITECTURES["unet"].size_divisor = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_shape_and_backward_gradients(name):
    in_channels = 3 if name == "resunet" else 1
    model = build_model(name, in_channels=in_channels, num_classes=3).train()
    x = _input(name, in_channels).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (1, 3, *x.shape[2:])
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0
    # The registry's divisor matches the model's own and too-small multiples are refused clearly.
    assert getattr(model, "size_divisor") == ARCHITECTURES[name].size_divisor
    bad = list(x.shape)
    bad[-1] += ARCHITECTURES[name].size_divisor // 2
    with pytest.raises(ValueError, match="multiple of"):
        model(torch.zeros(bad))


def test_num_classes_and_channels_are_honoured():
    model = build_model("resunet", in_channels=5, num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 5, 32, 48)).shape == (2, 2, 32, 48)
    with pytest.raises(RuntimeError):  # a 3-channel model refuses 5-channel input
        build_model("resunet", in_channels=3)(torch.zeros(1, 5, 32, 32))


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ModelError) as info:
        build_model("vnet")
    message = str(info.value)
    assert "vnet" in message and all(name in message for name in EXPECTED)


def test_bad_options_are_model_errors():
    with pytest.raises(ModelError, match="base_filters"):
        build_model("resnet50_unet", base_filters=8)
    with pytest.raises(ModelError, match="output_stride"):
        build_model("deeplabv3plus_resnet50", output_stride=12)
    with pytest.raises(ModelError, match="num_classes"):
        build_model("unet", num_classes=0)


def _seed_unet_parameter_count(in_ch: int, classes: int, widths: list[int]) -> int:
    """Analytic count for the seed recipe: bias-free 3x3 convs + BN(2 params), 2x2 transposed convs, 1x1 head."""

    def double_conv(c_in: int, c_out: int) -> int:
        return 9 * c_in * c_out + 9 * c_out * c_out + 2 * (2 * c_out)

    total, previous = 0, in_ch
    for width in widths:  # encoder levels and bottleneck
        total += double_conv(previous, width)
        previous = width
    for width, deeper in zip(reversed(widths[:-1]), reversed(widths[1:])):
        total += 4 * deeper * width + width  # transposed conv with bias
        total += double_conv(2 * width, width)
    return total + widths[0] * classes + classes


def test_seed_unet_has_64_128_256_levels_and_512_bottleneck():
    model = build_model("unet", in_channels=1, num_classes=3)
    expected = _seed_unet_parameter_count(1, 3, [64, 128, 256, 512])
    assert sum(p.numel() for p in model.parameters()) == expected
    assert 7.0e6 < expected < 8.0e6
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sorted({m.out_channels for m in convs}) == [3, 64, 128, 256, 512]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2 * 7


def test_segnet_decodes_with_the_pooling_indices():
    model = build_model("segnet").eval()
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4 and all(p.return_indices for p in pools)
    assert sum(isinstance(m, nn.MaxUnpool2d) for m in model.modules()) == 4
    # No skip concatenation: every decoder conv sees exactly its level's width, never twice it.
    widths = {64, 128, 256, 512}
    for decoder in model.decoders:
        first_conv = next(m for m in decoder.modules() if isinstance(m, nn.Conv2d))
        assert first_conv.in_channels in widths

    x = _input("segnet", 1)
    with torch.no_grad():
        reference = model(x)

        def shuffle_indices(module, args, output):
            values, indices = output
            return values, indices.flip(-1)  # same values, wrong positions

        handle = pools[0].register_forward_hook(shuffle_indices)
        permuted = model(x)
        handle.remove()
        again = model(x)
    assert torch.equal(reference, again)
    assert not torch.allclose(reference, permuted)


def _torchvision_key_count(layers: tuple[int, ...], with_fc: bool) -> int:
    """conv1 + bn1 (4 tensors + num_batches_tracked), 3 conv + 3 BN per block, conv + BN per downsample."""
    bn = 5
    stem = 1 + bn
    per_block = 3 * (1 + bn)
    downsample = 1 + bn  # one per stage: layer1 changes width 64 -> 256, the others also stride
    return stem + per_block * sum(layers) + downsample * len(layers) + (2 if with_fc else 0)


def test_resnet_state_dict_uses_torchvision_names():
    classifier = resnet50(num_classes=1000)
    keys = classifier.state_dict().keys()
    assert _torchvision_key_count((3, 4, 6, 3), with_fc=True) == 320 == len(keys)
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.num_batches_tracked", "layer2.3.conv2.weight", "layer3.5.bn2.bias",
                "layer4.2.bn3.running_var", "fc.weight", "fc.bias"):
        assert key in keys
    assert "layer3.6.conv1.weight" not in keys and "layer1.1.downsample.0.weight" not in keys
    # torchvision's documented parameter count for resnet50 (ImageNet, 1000 classes).
    assert sum(p.numel() for p in classifier.parameters()) == 25_557_032
    assert classifier.layer2[0].conv2.stride == (2, 2) and classifier.layer2[0].conv1.stride == (1, 1)

    encoder = resnet50(in_channels=1)
    assert len(encoder.state_dict()) == 318 and not any(k.startswith("fc.") for k in encoder.state_dict())
    assert encoder.conv1.weight.shape == (64, 1, 7, 7)
    with torch.no_grad():
        features = encoder.eval()(torch.zeros(1, 1, 64, 64))
    assert [f.shape[1] for f in features] == [64, 256, 512, 1024, 2048]
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]


def test_resnet101_layout():
    model = resnet101(num_classes=1000)
    assert len(model.state_dict()) == _torchvision_key_count((3, 4, 23, 3), with_fc=True)
    assert "layer3.22.bn3.running_var" in model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 44_549_160  # torchvision's documented count


def test_deeplab_is_output_stride_16_with_aspp_rates():
    model = build_model("deeplabv3plus_resnet50").eval()
    with torch.no_grad():
        features = model.encoder.forward_features(torch.zeros(1, 1, 64, 64))
    assert features[-1].shape[-1] == 64 // 16 and features[1].shape[-1] == 64 // 4
    atrous = [m.dilation[0] for m in model.aspp.modules() if isinstance(m, nn.Conv2d) and m.dilation[0] > 1]
    assert atrous == [6, 12, 18]
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.aspp.modules())
    assert model.low_level[0].in_channels == 256  # layer1 features


def test_parameter_counts_are_in_sane_ranges():
    def millions(name: str, **kwargs) -> float:
        return sum(p.numel() for p in build_model(name, **kwargs).parameters()) / 1e6

    assert 1.0 < millions("resunet", in_channels=3) < 6.0  # "a few M": the shipped default must stay cheap
    assert 0.5 < millions("unet3d") < 3.0
    assert 8.0 < millions("segnet") < 12.0
    # The ResNet-based models' encoders are pinned to torchvision's exact counts above.
