"""Known values of the segmentation losses."""

import math

import pytest
import torch

from lungseg_core.errors import InputError
from lungseg_core.training.losses import LOSSES, build_loss


def _perfect_logits(target: torch.Tensor, classes: int, margin: float = 50.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(target, classes).movedim(-1, 1).float() * 2 * margin - margin


@pytest.fixture
def target():
    t = torch.zeros(2, 8, 8, dtype=torch.long)
    t[:, 2:5, 2:6] = 1
    t[1, 6:8, 0:3] = 2
    return t


def test_dice_loss_is_zero_for_perfect_and_one_for_disjoint(target):
    dice = build_loss("dice")
    assert dice(_perfect_logits(target, 3), target).item() == pytest.approx(0.0, abs=1e-4)
    wrong = torch.where(target == 0, torch.ones_like(target), torch.zeros_like(target))  # fg <-> bg swapped
    assert dice(_perfect_logits(wrong, 3), target).item() == pytest.approx(1.0, abs=1e-3)


def test_cross_entropy_of_uniform_logits_is_log_classes(target):
    logits = torch.zeros(2, 3, 8, 8)
    assert build_loss("cross_entropy")(logits, target).item() == pytest.approx(math.log(3), rel=1e-6)


def test_bce_variants_of_zero_logits_are_log_two(target):
    logits = torch.zeros(2, 3, 8, 8)
    assert build_loss("bce_with_logits")(logits, target).item() == pytest.approx(math.log(2), rel=1e-6)
    assert build_loss("bce")(logits, target).item() == pytest.approx(math.log(2), rel=1e-5)


def test_focal_with_gamma_zero_equals_cross_entropy_and_down_weights_easy_pixels(target):
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ce = build_loss("cross_entropy")(logits, target).item()
    assert build_loss("focal", gamma=0.0)(logits, target).item() == pytest.approx(ce, rel=1e-5)
    assert build_loss("focal", gamma=2.0)(logits, target).item() < ce


def test_tversky_with_equal_weights_is_dice_and_beta_punishes_misses(target):
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    dice = build_loss("dice")(logits, target).item()
    assert build_loss("tversky", alpha=0.5, beta=0.5)(logits, target).item() == pytest.approx(dice, rel=1e-5)
    # predicting nothing misses everything: a recall-weighted Tversky loss is close to 1
    nothing = _perfect_logits(torch.zeros_like(target), 3)
    assert build_loss("tversky", alpha=0.3, beta=0.7)(nothing, target).item() == pytest.approx(1.0, abs=1e-3)


def test_dice_ce_is_the_sum_of_its_parts(target):
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = build_loss("dice")(logits, target) + build_loss("cross_entropy")(logits, target)
    assert build_loss("dice_ce")(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_every_loss_has_a_gradient(target):
    for name in LOSSES:
        logits = torch.randn(2, 3, 8, 8, requires_grad=True)
        build_loss(name)(logits, target).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all(), name


def test_unknown_loss_and_bad_option_are_input_errors():
    with pytest.raises(InputError, match="Unknown loss 'hinge'"):
        build_loss("hinge")
    with pytest.raises(InputError, match="Bad options for loss 'dice'"):
        build_loss("dice", gamma=2)


def test_union_term_spares_a_sure_lesion_put_in_the_wrong_infection_class(target):
    # every lesion pixel called the other foreground class: wrong type, right extent
    swapped = torch.where(target == 0, target, 3 - target)
    logits = _perfect_logits(swapped, 3)
    per_class = build_loss("dice")(logits, target).item()
    with_union = build_loss("dice", union=True)(logits, target).item()
    assert per_class == pytest.approx(1.0, abs=1e-3)
    assert with_union == pytest.approx(2 / 3, abs=1e-3)  # classes 0 and 0, union 1
    assert build_loss("dice", union=True)(_perfect_logits(target, 3), target).item() == pytest.approx(0.0, abs=1e-4)
    missed = _perfect_logits(torch.zeros_like(target), 3)
    assert build_loss("dice_ce", union=True)(missed, target).item() > build_loss("dice_ce", union=True)(logits, target).item()
