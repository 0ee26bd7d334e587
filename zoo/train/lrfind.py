"""The learning-rate range test (``zoo lr-find``; Smith 2015, fastai's ``lr_find``).

A run is set up exactly as ``zoo train`` would set it up (same components, data, weights,
augmentations, parameter groups, precision), but nothing is written: its freshly built network
is a throwaway copy. It then takes one optimizer step per batch while the learning rate grows
exponentially from ``start_lr`` to ``end_lr`` over ``steps`` batches, recording the smoothed
loss, and stops early once the loss diverges (four times its minimum, or not finite). The
suggestion is a tenth of the rate at which the smoothed loss was lowest (Smith's and fastai's
``lr_min / 10``): the loss still falls fast there, a decade short of where it turns. (fastai's
newer "valley" rule lands on the slow start of the descent when the loss is smooth, as it is
for a small network, and suggests rates too low to converge in a few epochs.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from zoo.errors import ZooError
from zoo.train.config import TrainConfig
from zoo.train.progress import Reporter

_SMOOTHING = 0.98  # exponential smoothing of the loss, with bias correction
_DIVERGED = 4.0  # stop when the smoothed loss exceeds this multiple of its minimum


@dataclass
class LRFinding:
    """The sweep: rates tried, smoothed losses at each, the suggestion and why it stopped."""

    lrs: list[float]
    losses: list[float]
    suggested_lr: float | None
    stopped: str | None  # "diverged", "non-finite loss", or None (all steps ran)
    warning: str | None = None  # why the suggestion is not to be trusted (``caveat``)

    def to_json(self) -> dict[str, Any]:
        return {
            "suggested_lr": self.suggested_lr,
            "lrs": self.lrs,
            "losses": self.losses,
            "stopped": self.stopped,
            "warning": self.warning,
        }


def lr_find(
    cfg: TrainConfig,
    *,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    reporter: Reporter | None = None,
) -> LRFinding:
    """Run the range test for the run ``cfg`` describes (its ``lr`` and schedule are not used;
    parameter groups keep their relative rates, as with ``--layer-decay``)."""
    import torch

    from zoo.device.precision import autocast
    from zoo.train.trainer import Trainer

    if steps < 5:
        raise ZooError("--steps must be at least 5")
    if not 0 < start_lr < end_lr:
        raise ZooError("the rates must satisfy 0 < --start-lr < --end-lr")
    if cfg.nproc > 1:
        raise ZooError("zoo lr-find runs in one process; leave out --nproc")
    cfg = cfg.replace(
        epochs=1,
        ema=False,
        compile=False,
        resume=None,
        out=None,
        overwrite=False,
        callback=[],
        patience=None,
        tensorboard=False,
        monitor="train_loss",  # the sweep monitors nothing: no note about validation data
    )
    trainer = Trainer(cfg, reporter or Reporter())
    trainer.setup(claim=False)  # zoo train's own set-up; nothing is written
    optimizer, scaler = trainer.optimizer, trainer.scaler
    scales = [g["lr"] / cfg.lr for g in optimizer.param_groups]
    gamma = (end_lr / start_lr) ** (1 / (steps - 1))
    amp = autocast(trainer.device, trainer.amp_dtype)
    trainer.model.train()
    trainer.freezer.apply(0)
    lrs: list[float] = []
    losses: list[float] = []
    average, best, stopped = 0.0, math.inf, None
    for i, (x, y) in zip(range(steps), _batches(trainer), strict=False):
        lr = start_lr * gamma**i
        for group, scale in zip(optimizer.param_groups, scales, strict=True):
            group["lr"] = lr * scale
        if trainer.augs:
            x = x.float().div_(255)
            for aug in trainer.augs:
                x, y = aug(x, y)
        x = trainer.normalize(x)
        with amp:
            loss = trainer.loss_fn(trainer.model(x), y)
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if cfg.clip_grad is not None:
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainer.net.parameters(), cfg.clip_grad)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            stopped = "non-finite loss"
            break
        average = _SMOOTHING * average + (1 - _SMOOTHING) * value
        smoothed = average / (1 - _SMOOTHING ** (i + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > _DIVERGED * best:
            stopped = "diverged"
            break
    return LRFinding(lrs, losses, suggestion(lrs, losses), stopped, caveat(lrs, losses))


def _batches(trainer: Any) -> Iterator[tuple[Any, Any]]:
    """Training batches, epoch after epoch, seeded as training seeds them."""
    from zoo.train.runtime import epoch_seed, seed_everything

    epoch = 0
    while True:
        seed_everything(epoch_seed(trainer.cfg.seed, epoch, 0))
        yield from trainer.train_batches.epoch(epoch)
        epoch += 1


def _lowest(losses: list[float]) -> int | None:
    """The step of the lowest smoothed loss, leaving out the first tenth of the sweep (where
    the smoothing has seen few batches); None for a sweep of under 5 steps."""
    if len(losses) < 5:
        return None
    return min(range(len(losses) // 10, len(losses)), key=losses.__getitem__)


def suggestion(lrs: list[float], losses: list[float]) -> float | None:
    """A tenth of the rate of the lowest smoothed loss; None for a sweep of under 5 steps."""
    best = _lowest(losses)
    return None if best is None else lrs[best] / 10


def caveat(lrs: list[float], losses: list[float]) -> str | None:
    """Why the suggestion is not to be trusted, if it is not: the loss was lowest at the first
    rate considered, so it only rose over the sweep (steps too coarse, or a start too high),
    and the suggestion is the start of the sweep, not a rate the loss fell at."""
    best = _lowest(losses)
    if best is None or best != len(losses) // 10:
        return None
    return (
        f"warning: the loss was lowest at the first rate considered ({lrs[best]:.2e}) and only "
        "rose after it, so the suggestion is the start of the sweep, not a rate the loss fell "
        "at; sweep in finer steps (more --steps) or from a lower --start-lr"
    )
