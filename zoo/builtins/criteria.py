"""Loss implementations (imported only when one is built). All accept int64 ``[B]`` targets
and soft ``[B, K]`` targets, as produced by mixup and cutmix."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.data.augment import soft_targets


def _smooth(
    targets: torch.Tensor, num_classes: int, smoothing: float, dtype: torch.dtype
) -> torch.Tensor:
    y = soft_targets(targets, num_classes, dtype)
    return y * (1 - smoothing) + smoothing / num_classes if smoothing else y


def _check_smoothing(value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {value}")


class CrossEntropy:
    """Softmax cross-entropy with optional label smoothing and class weights."""

    def __init__(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> None:
        _check_smoothing(label_smoothing)
        self.label_smoothing, self.weight = label_smoothing, weight

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.device, logits.dtype)
        if targets.ndim == 2:
            targets = targets.to(logits.dtype)
        return F.cross_entropy(logits, targets, weight=weight, label_smoothing=self.label_smoothing)


class SoftTargetCrossEntropy:
    """-sum(t * log_softmax(logits)), averaged over the batch; hard targets become one-hot."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        self.weight = weight

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = soft_targets(targets, logits.shape[1], logits.dtype)
        logp = F.log_softmax(logits, dim=-1)
        if self.weight is not None:
            logp = logp * self.weight.to(logits.device, logits.dtype)
        return -(y * logp).sum(dim=-1).mean()


class BinaryCrossEntropy:
    """Sigmoid binary cross-entropy against one-hot (or soft) targets, mean over classes and
    batch; ``label_smoothing`` moves targets towards 1/K. ``pos_weight`` weighs the positive
    term: one value, or one per class (``[K]``); ``weight`` rescales each class's term."""

    def __init__(
        self,
        label_smoothing: float = 0.0,
        pos_weight: float | torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> None:
        _check_smoothing(label_smoothing)
        self.label_smoothing, self.pos_weight, self.weight = label_smoothing, pos_weight, weight

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        y = _smooth(targets, logits.shape[1], self.label_smoothing, logits.dtype)
        pos = self.pos_weight
        if isinstance(pos, torch.Tensor):
            pos = pos.to(logits.device, logits.dtype)
        elif pos is not None:
            pos = torch.full_like(logits[0], float(pos))
        weight = None if self.weight is None else self.weight.to(logits.device, logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, y, weight=weight, pos_weight=pos)


class FocalLoss:
    """Softmax focal loss: -sum(t * alpha_k * (1 - p_k)^gamma * log p_k), batch mean.

    gamma = 0 gives cross-entropy. Soft targets are supported."""

    def __init__(
        self, gamma: float = 2.0, label_smoothing: float = 0.0, weight: torch.Tensor | None = None
    ) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must not be negative, got {gamma}")
        _check_smoothing(label_smoothing)
        self.gamma, self.label_smoothing, self.weight = gamma, label_smoothing, weight

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        y = _smooth(targets, logits.shape[1], self.label_smoothing, logits.dtype)
        logp = F.log_softmax(logits, dim=-1)
        loss = -(1 - logp.exp()).pow(self.gamma) * logp
        if self.weight is not None:
            loss = loss * self.weight.to(logits.device, logits.dtype)
        return (y * loss).sum(dim=-1).mean()
