"""Exponential moving average of a network's weights (evaluated and saved beside them)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every optimizer step; buffers (such
    as BatchNorm statistics) are copied."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(net).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        mine = [p for p in self.module.parameters()]
        theirs = [p.detach() for p in net.parameters()]
        torch._foreach_lerp_(mine, theirs, 1.0 - self.decay)
        for b_ema, b in zip(self.module.buffers(), net.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
