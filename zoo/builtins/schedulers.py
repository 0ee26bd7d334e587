"""Built-in learning-rate schedules, stepped after every optimizer step. All take
``warmup_epochs`` (linear warmup, fractional epochs allowed) and ``warmup_start`` (the factor
warmup starts from)."""

from __future__ import annotations

from typing import Any

from zoo.errors import shown
from zoo.plugins.hookspecs import Register, hookimpl


def constant(
    optimizer: Any,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    warmup_start: float = 0.1,
) -> Any:
    """A constant learning rate (after optional warmup)."""
    from zoo.builtins.schedules import Schedule, lambda_lr

    return lambda_lr(
        optimizer,
        Schedule(
            "constant", epochs * steps_per_epoch, steps_per_epoch, warmup_epochs, warmup_start
        ),
    )


def step(
    optimizer: Any,
    epochs: int,
    steps_per_epoch: int,
    step_epochs: int = 30,
    gamma: float = 0.1,
    warmup_epochs: float = 0.0,
    warmup_start: float = 0.1,
) -> Any:
    """Multiply the rate by gamma every step_epochs epochs."""
    from zoo.builtins.schedules import Schedule, lambda_lr

    if step_epochs < 1 or gamma <= 0:
        raise ValueError("step_epochs must be >= 1 and gamma positive")
    return lambda_lr(
        optimizer,
        Schedule(
            "step",
            epochs * steps_per_epoch,
            steps_per_epoch,
            warmup_epochs,
            warmup_start,
            step_epochs=step_epochs,
            gamma=gamma,
        ),
    )


def cosine(
    optimizer: Any,
    epochs: int,
    steps_per_epoch: int,
    min_lr_ratio: float = 0.0,
    warmup_epochs: float = 0.0,
    warmup_start: float = 0.1,
) -> Any:
    """Cosine decay to min_lr_ratio x the base rate at the end of training."""
    from zoo.builtins.schedules import Schedule, lambda_lr

    if not 0 <= min_lr_ratio <= 1:
        raise ValueError("min_lr_ratio must be in [0, 1]")
    return lambda_lr(
        optimizer,
        Schedule(
            "cosine",
            epochs * steps_per_epoch,
            steps_per_epoch,
            warmup_epochs,
            warmup_start,
            min_lr_ratio=min_lr_ratio,
        ),
    )


def plateau(
    optimizer: Any,
    epochs: int,
    steps_per_epoch: int,
    monitor_mode: str = "max",
    factor: float = 0.1,
    patience: int = 3,
    min_lr: float = 0.0,
    mode: str = "auto",
) -> Any:
    """Reduce the rate by factor when the --monitor metric stalls for patience epochs.

    mode: auto (follow the monitored metric: max for accuracy, min for losses), max or min.
    """
    import torch

    if mode not in ("auto", "max", "min"):
        raise ValueError(f"mode must be auto, max or min, got {shown(mode)}")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=monitor_mode if mode == "auto" else mode,
        factor=factor,
        patience=patience,
        min_lr=min_lr,
    )


@hookimpl
def zoo_register_schedulers(register: Register) -> None:
    register("constant", constant)
    register("step", step)
    register("cosine", cosine)
    register("plateau", plateau, aliases=("reduce_on_plateau",))
