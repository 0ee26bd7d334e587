"""Exponential moving average of a network's weights (evaluated and saved beside them)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = d * ema + (1 - d) * weights`` after every optimizer step; buffers (such as
    BatchNorm statistics) are copied.

    With ``warmup``, the n-th update uses ``d = min(decay, (1 + n) / (10 + n))``: early on the
    average follows the weights closely instead of staying near the random initialisation, so
    the EMA is useful on short runs too. ``updates`` is saved with the training state, so a
    resumed run continues on the same schedule.
    """

    def __init__(self, net: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.module = copy.deepcopy(net).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        mine = [p for p in self.module.parameters()]
        theirs = [p.detach() for p in net.parameters()]
        torch._foreach_lerp_(mine, theirs, 1.0 - self.current_decay())
        self.updates += 1
        for b_ema, b in zip(self.module.buffers(), net.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
