"""A timm scheduler behind torch's ``LRScheduler`` interface, which zoo's trainer drives.

zoo calls ``step()`` after every optimizer update. timm's schedules are pure functions of a count
(epochs with ``step(epoch)``, updates with ``step_update(n)``), so the only state is the number of
updates done: that is what ``state_dict()`` holds, as plain numbers a JSON checkpoint can store,
and a resumed run recomputes exactly the rate it would have had.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler


class TimmLR(LRScheduler):
    """Steps a timm scheduler from the number of optimizer updates done (``last_epoch``).

    The rates are a function of that count alone, as in timm's training loop: the scheduler's
    own initial rates until the first update (or the first epoch boundary), then
    ``step_update(updates)``, or ``step(epoch)`` once per completed epoch with
    ``step_on_epochs``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: Any,
        steps_per_epoch: int,
        step_on_epochs: bool,
    ) -> None:
        self.schedule = schedule
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.step_on_epochs = step_on_epochs
        self.initial_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """Let timm set the rates for the count of updates done, and report them."""
        count = self.last_epoch
        if self.step_on_epochs:
            count //= self.steps_per_epoch
        if count <= 0:
            return list(self.initial_lrs)
        if self.step_on_epochs:
            self.schedule.step(count)
        else:
            self.schedule.step_update(count)
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.last_epoch, "step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["updates"])
        self._step_count = int(state_dict["step_count"])
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr
