"""Segmentation losses of the seed recipes, all on raw network logits of shape (N, C, H, W).

Networks always output one channel per class (background included, the model-card contract), so the
"binary" losses of the seeds (BCE, BCE-with-logits) are applied per channel against one-hot targets:
with two classes this is exactly the single-sigmoid BCE of the papers, and inference stays an argmax.
Targets are integer class maps of shape (N, H, W).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lungseg_core.errors import InputError

_EPS = 1e-6


def one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) integer labels -> (N, C, H, W) float one-hot."""
    return F.one_hot(target.long(), num_classes).movedim(-1, 1).float()


def _foreground(tensor: torch.Tensor, include_background: bool) -> torch.Tensor:
    return tensor if include_background or tensor.shape[1] == 1 else tensor[:, 1:]


class BCELoss(nn.Module):
    """Binary cross-entropy on sigmoid probabilities (seed 1's sigmoid output + BCE), per class channel."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(logits.float()).clamp(_EPS, 1 - _EPS)
        return F.binary_cross_entropy(probs, one_hot(target, logits.shape[1]))


class BCEWithLogitsLoss(nn.Module):
    """Numerically stable BCE on logits (seed 4), per class channel against one-hot targets."""

    def __init__(self, pos_weight: float | None = None):
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(
            logits.float(), one_hot(target, logits.shape[1]), pos_weight=weight
        )


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy over the classes, optionally class-weighted."""

    def __init__(self, class_weights: list[float] | None = None):
        super().__init__()
        self.class_weights = class_weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None
        if self.class_weights is not None:
            weight = torch.tensor(self.class_weights, dtype=torch.float32, device=logits.device)
        return F.cross_entropy(logits.float(), target.long(), weight=weight)


class TverskyLoss(nn.Module):
    """1 - Tversky index on softmax probabilities, averaged over (foreground) classes.

    ``alpha`` weighs false positives, ``beta`` false negatives; beta > alpha favours recall of small
    lesions. alpha = beta = 0.5 is the soft Dice loss. Sums run over the whole batch (batch Dice), which
    keeps the loss defined for slices without any foreground.

    ``union`` also scores all foreground classes together as one more region (nnU-Net's region-based
    training). For infection the union is what gets measured ("any infection"), while the border between
    ground glass and consolidation is uncertain even for experts; without the union term a pixel that is
    surely infected but half GGO, half consolidation is penalised in both classes.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1e-5, include_background: bool = False,
                 union: bool = False):
        super().__init__()
        self.alpha, self.beta, self.smooth = alpha, beta, smooth
        self.include_background, self.union = include_background, union

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        all_probs = torch.softmax(logits.float(), dim=1)
        all_truth = one_hot(target, logits.shape[1])
        probs = _foreground(all_probs, self.include_background)
        truth = _foreground(all_truth, self.include_background)
        if self.union:
            probs = torch.cat([probs, 1 - all_probs[:, :1]], dim=1)
            truth = torch.cat([truth, 1 - all_truth[:, :1]], dim=1)
        dims = (0, 2, 3)
        tp = (probs * truth).sum(dims)
        fp = (probs * (1 - truth)).sum(dims)
        fn = ((1 - probs) * truth).sum(dims)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return 1.0 - index.mean()


class DiceLoss(TverskyLoss):
    """Soft Dice loss: 0 for a perfect prediction, about 1 for a completely wrong one."""

    def __init__(self, smooth: float = 1e-5, include_background: bool = False, union: bool = False):
        super().__init__(alpha=0.5, beta=0.5, smooth=smooth, include_background=include_background, union=union)


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al.): cross-entropy scaled by (1 - p_true)^gamma; gamma 0 = CE."""

    def __init__(self, gamma: float = 2.0, alpha: list[float] | None = None):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=1)
        log_p_true = log_probs.gather(1, target.long().unsqueeze(1)).squeeze(1)
        loss = -((1 - log_p_true.exp()) ** self.gamma) * log_p_true
        if self.alpha is not None:
            alpha = torch.tensor(self.alpha, dtype=torch.float32, device=logits.device)
            loss = loss * alpha[target.long()]
        return loss.mean()


class DiceCELoss(nn.Module):
    """Dice + cross-entropy (nnU-Net's default): region overlap plus a well-behaved per-pixel gradient."""

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, class_weights: list[float] | None = None,
                 union: bool = False):
        super().__init__()
        self.dice, self.ce = DiceLoss(union=union), CrossEntropyLoss(class_weights)
        self.dice_weight, self.ce_weight = dice_weight, ce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice_weight * self.dice(logits, target) + self.ce_weight * self.ce(logits, target)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": BCELoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "cross_entropy": CrossEntropyLoss,
    "dice": DiceLoss,
    "dice_ce": DiceCELoss,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
}


def build_loss(name: str, **kwargs) -> nn.Module:
    """The loss called ``name`` (see :data:`LOSSES`) with its keyword options."""
    if name not in LOSSES:
        raise InputError(f"Unknown loss '{name}'", f"use one of: {', '.join(LOSSES)}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise InputError(f"Bad options for loss '{name}': {exc}", "check loss_kwargs in the config") from None
