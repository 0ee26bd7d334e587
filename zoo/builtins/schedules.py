"""Learning-rate schedules as step-indexed multipliers of the base rate.

Each schedule is a plain object of numbers built from the run's settings. A checkpoint restores
the step count, not the shape: a resumed run with the same settings continues on exactly the
same curve, and one given more ``--epochs`` stretches the schedule over them (as timm's
schedulers do), rather than training on at the end of a finished schedule.
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim.lr_scheduler import LambdaLR


class Schedule:
    """lr(step) = base_lr * factor(step), with linear warmup from ``warmup_start``."""

    def __init__(
        self,
        kind: str,
        total_steps: int,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
        warmup_start: float = 0.1,
        **params: Any,
    ) -> None:
        if warmup_epochs < 0 or not 0 <= warmup_start <= 1:
            raise ValueError("warmup_epochs must be >= 0 and warmup_start in [0, 1]")
        self.kind = kind
        self.total_steps = max(1, total_steps)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup_steps = round(warmup_epochs * self.steps_per_epoch)
        self.warmup_start = warmup_start
        self.params = params

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps
        if self.kind == "step":
            epoch = step // self.steps_per_epoch
            return float(self.params["gamma"] ** (epoch // self.params["step_epochs"]))
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(1.0, (step - self.warmup_steps) / span)
            floor = self.params["min_lr_ratio"]
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0


class ScheduleLR(LambdaLR):
    """``LambdaLR`` over a ``Schedule`` whose saved state leaves the schedule's shape alone."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        kept = {k: v for k, v in state_dict.items() if k != "lr_lambdas"}
        super().load_state_dict({**kept, "lr_lambdas": [None] * len(self.lr_lambdas)})


def lambda_lr(optimizer: Any, schedule: Schedule) -> ScheduleLR:
    return ScheduleLR(optimizer, schedule)
