"""Adapters that make timm's loss modules meet zoo's loss contract: ``(logits, targets) ->
scalar`` on the training device, int64 ``[B]`` and soft ``[B, K]`` targets."""

from __future__ import annotations

import torch
from torch import nn


class OnDevice:
    """Calls a timm loss module, moved once to the logits' device (its buffers: class weights,
    pos_weight). ``hard_only`` names a loss that cannot use soft targets, for a clear error."""

    def __init__(self, module: nn.Module, hard_only: str | None = None) -> None:
        self.module = module
        self.hard_only = hard_only
        self._device: torch.device | None = None

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.hard_only and targets.ndim != 1:
            raise ValueError(
                f"{self.hard_only} needs class-index targets, not the soft targets of "
                "mixup/cutmix; use timm_ce, timm_bce or poly with mixing augmentations"
            )
        if self._device != logits.device:
            self.module.to(logits.device)
            self._device = logits.device
        return self.module(logits, targets)


class TimmCrossEntropy:
    """timm's label-smoothing cross-entropy for class indices, soft-target cross-entropy for
    mixed targets (timm's train script picks one of the two; zoo's batches may carry either)."""

    def __init__(self, smoothing: float = 0.0) -> None:
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.hard: nn.Module = (
            LabelSmoothingCrossEntropy(smoothing) if smoothing else nn.CrossEntropyLoss()
        )
        self.soft = SoftTargetCrossEntropy()

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim == 2:
            return self.soft(logits, targets.to(logits.dtype))
        return self.hard(logits, targets)
