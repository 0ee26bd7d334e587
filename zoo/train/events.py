"""Training events: how code reacts to a run without editing the loop (as Keras and Lightning
callbacks do).

The trainer raises three events, on rank 0 only, with Ctrl-C and SIGTERM held:

- ``on_fit_start(run)`` once the run directory is ready, before the first epoch (also when a
  run resumes: ``run.epoch`` then says how many epochs are done);
- ``on_epoch_end(run, record)`` after every epoch, with its metrics, *before* the epoch is
  saved: what a callback changes in its state, and a reason to stop that it returns, are saved
  with that epoch, so a resumed run ends bit-identical to an uninterrupted one;
- ``on_fit_end(run, summary)`` when the run is complete (all epochs, or stopped by a callback),
  with ``summary.json`` and the model card ``README.md`` written.

zoo's own checkpoint writing and metrics files run last on the same mechanism
(``zoo.train.checkpointing``); early stopping and TensorBoard are built-in callbacks
(``zoo.builtins.callbacks``); plugins add theirs through ``zoo_register_callbacks``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError, shown

if TYPE_CHECKING:
    from torch import nn

    from zoo.models.weights import ModelInfo
    from zoo.train.config import TrainConfig


class Callback:
    """Base class of training callbacks; every method is optional."""

    def on_fit_start(self, run: Run) -> None:
        """The run directory is ready; no epoch of this invocation has run yet."""

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        """Epoch ``record["epoch"]`` is done (``record`` holds its metrics, as written to
        metrics.jsonl). Return a short reason to stop the run after this epoch, or None."""
        return None

    def on_fit_end(self, run: Run, summary: dict[str, Any]) -> None:
        """The run is complete; ``summary`` is what summary.json holds."""

    def close(self) -> None:
        """The run is over, whichever way it ended (also after an error or an interrupt):
        release files, connections and threads."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive ``--resume``: numbers, strings, lists, dicts and tensors."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, before ``on_fit_start`` of a resumed run."""


@dataclass
class Best:
    """The best value of the monitored metric so far (``--monitor``), and epochs since."""

    metric: str
    mode: str  # "max" or "min"
    value: float | None = None
    epoch: int | None = None
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record epoch ``epoch``'s value; whether it is the best so far."""
        improved = (
            self.value is None
            or self.value != self.value  # NaN
            or (value > self.value if self.mode == "max" else value < self.value)
        )
        if improved:
            self.value, self.epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved


class Run:
    """What callbacks see of the run: read access, and ``note`` to print a line."""

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    @property
    def config(self) -> TrainConfig:
        return self._trainer.cfg

    @property
    def net(self) -> nn.Module:
        """The network being trained (unwrapped: what is saved and evaluated)."""
        return self._trainer.net

    @property
    def ema_net(self) -> nn.Module | None:
        """The EMA copy of the network with ``--ema``, else None."""
        ema = self._trainer.ema
        return None if ema is None else ema.module

    @property
    def epoch(self) -> int:
        """Epochs completed so far (resumed ones included)."""
        return len(self._trainer.history)

    @property
    def epochs(self) -> int:
        """Epochs planned."""
        return self._trainer.cfg.epochs

    @property
    def out(self) -> Path:
        """The run directory."""
        return self._trainer.out

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every completed epoch's record, oldest first (a copy)."""
        return copy.deepcopy(self._trainer.history)

    @property
    def best(self) -> Best:
        """The monitored metric's best value and epoch (a copy)."""
        return copy.copy(self._trainer.best)

    @property
    def info(self) -> ModelInfo:
        """What the saved weights carry: architecture, classes, input size, normalization."""
        return self._trainer.info

    @property
    def world_size(self) -> int:
        """Processes training together (1 without torchrun)."""
        return self._trainer.dist.world

    @property
    def device(self) -> str:
        """Where rank 0 trains: ``cpu``, ``cuda:0``, ``mps``."""
        return str(self._trainer.device)

    def note(self, text: str) -> None:
        """Print one line under the progress display."""
        self._trainer.reporter.note(text)


class CallbackError(ZooError):
    """A callback raised: the run stops, naming it."""


@dataclass
class Attached:
    """A callback in a run: ``key`` names its saved state, ``label`` names it in messages
    (empty for zoo's own checkpoint writing, whose errors say what they are)."""

    key: str
    label: str
    callback: Any


class Events:
    """Raises the events on the run's callbacks in order and gathers their state."""

    def __init__(self, attached: list[Attached]) -> None:
        self.attached = attached
        self.stopped_by: str | None = None  # the callback whose reason to stop ended the run

    def fit_start(self, run: Run) -> None:
        for a in self.attached:
            _call(a, "on_fit_start", run)

    def epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        """Every callback sees the epoch; the first reason to stop wins."""
        reason = None
        for a in self.attached:
            said = _call(a, "on_epoch_end", run, record)
            if said and reason is None:
                reason, self.stopped_by = str(said), a.key.partition("#")[0]
        return reason

    def fit_end(self, run: Run, summary: dict[str, Any]) -> None:
        for a in self.attached:
            _call(a, "on_fit_end", run, summary)

    def close(self) -> None:
        """Close every callback, even when one of them fails; then report the first failure."""
        failure: ZooError | None = None
        for a in self.attached:
            try:
                _call(a, "close")
            except ZooError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def state_dict(self) -> dict[str, Any]:
        states = {}
        for a in self.attached:
            state = _call(a, "state_dict")
            if state:
                states[a.key] = state
        return states

    def load_state_dict(self, states: dict[str, Any]) -> list[str]:
        """Restore each callback's saved state; the keys of saved states no callback took."""
        for a in self.attached:
            if a.key in states:
                _call(a, "load_state_dict", states[a.key])
        return sorted(set(states) - {a.key for a in self.attached})


def _call(attached: Attached, method: str, *args: Any) -> Any:
    function = getattr(attached.callback, method, None)
    if function is None:  # callbacks need not derive from Callback
        return None
    try:
        return function(*args)
    except ZooError as exc:  # the callback's own one-line message
        if not attached.label:
            raise
        raise CallbackError(f"{attached.label}: {exc}", exit_code=exc.exit_code) from exc
    except Exception as exc:  # a plugin's callback may raise anything: name it
        text = shown(str(exc), quote=False, limit=1000)
        message = f"{attached.label or 'zoo'} failed in {method}: {type(exc).__name__}: {text}"
        raise CallbackError(message, exit_code=1) from exc
