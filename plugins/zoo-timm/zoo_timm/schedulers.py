"""timm's learning-rate schedules (``create_scheduler_v2``) as zoo schedulers.

timm's schedulers are stepped with explicit counts (``step(epoch)``, ``step_update(updates)``);
zoo steps a torch ``LRScheduler`` after every optimizer step. ``zoo_timm.lr.TimmLR`` bridges the
two. timm's ``plateau`` is left out: timm deprecates it and cannot checkpoint its state, and
zoo's own ``plateau`` does the same job.
"""

from __future__ import annotations

import inspect
from typing import Any

from zoo.plugins.hookspecs import Register

SCHEDULES: dict[str, str] = {
    "cosine": "Cosine decay to min_lr with warmup, optional restarts (cycle_*) and noise",
    "tanh": "Tanh decay to min_lr with warmup, optional restarts (cycle_*) and noise",
    "step": "Multiply the rate by decay_rate every decay_epochs, with warmup",
    "multistep": "Multiply the rate by decay_rate at each of decay_milestones, with warmup",
    "poly": "Polynomial decay (power decay_rate) to min_lr with warmup and restarts",
    "wsd": "Warmup-stable-decay: hold the rate, then decay over decay_epochs (decay_fn)",
    "rsqrt": "Inverse square-root decay after warmup, then a final decay phase",
    "constant": "A constant rate after warmup",
}
"""timm's schedule names and what each does (timm's plateau is left out, see above)."""

# create_scheduler_v2 arguments that zoo sets, or that belong to the plateau schedule.
_SET_BY_ZOO = frozenset(
    {"optimizer", "sched", "num_epochs", "updates_per_epoch", "plateau_mode", "patience_epochs"}
)


class TimmScheduler:
    """One of timm's schedules, built by timm.scheduler.create_scheduler_v2.

    Keywords are timm's (warmup_epochs, warmup_lr, min_lr, decay_epochs, decay_rate,
    cycle_limit, noise...); the schedule spans --epochs. step_on_epochs=true (timm's default)
    changes the rate at epoch boundaries, false after every optimizer update.
    """

    def __init__(self, sched: str, description: str) -> None:
        self.sched = sched
        self.__doc__ = f"{description}.\n\n{inspect.cleandoc(TimmScheduler.__doc__ or '')}"

    @property
    def __signature__(self) -> inspect.Signature:
        return scheduler_signature()

    def __call__(self, optimizer: Any, epochs: int, steps_per_epoch: int, **options: Any) -> Any:
        from timm.scheduler import create_scheduler_v2

        from zoo_timm.lr import TimmLR

        on_epochs = bool(options.pop("step_on_epochs", True))
        schedule, _ = create_scheduler_v2(
            optimizer,
            sched=self.sched,
            num_epochs=epochs,
            step_on_epochs=on_epochs,
            updates_per_epoch=max(1, steps_per_epoch),
            **options,
        )
        return TimmLR(optimizer, schedule, max(1, steps_per_epoch), on_epochs)

    def __repr__(self) -> str:
        return f"TimmScheduler({self.sched!r})"


def scheduler_signature() -> inspect.Signature:
    """``(optimizer, epochs, steps_per_epoch, *, <create_scheduler_v2's schedule keywords>)``."""
    from timm.scheduler import create_scheduler_v2

    P = inspect.Parameter
    head = [P(n, P.POSITIONAL_OR_KEYWORD) for n in ("optimizer", "epochs", "steps_per_epoch")]
    options = [
        P(p.name, P.KEYWORD_ONLY, default=p.default)
        for p in inspect.signature(create_scheduler_v2).parameters.values()
        if p.name not in _SET_BY_ZOO
    ]
    return inspect.Signature([*head, *options])


def register_schedulers(register: Register) -> None:
    """Register timm's schedules under their timm names (``timm_`` where zoo has the name)."""
    from zoo_timm.names import zoo_name

    for sched, description in SCHEDULES.items():
        register(
            zoo_name("scheduler", sched),
            TimmScheduler(sched, description),
            summary=f"timm: {description}",
        )
