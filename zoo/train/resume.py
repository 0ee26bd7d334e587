"""``--resume``: the configuration of a run to continue, and what may not change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.models.weights import read_header
from zoo.train import rundir
from zoo.train.config import TrainConfig, from_mapping, load_toml

# Settings a resumed run must share with the original (the others may change on resume).
IDENTITY = (
    "arch",
    "data",
    "aug",
    "loss",
    "optimizer",
    "scheduler",
    "init",
    "pretrained",
    "freeze_epochs",
    "layer_decay",
    "batch_size",
    "lr",
    "weight_decay",
    "image_size",
    "val_split",
    "accum_steps",
    "clip_grad",
    "ema",
    "ema_decay",
    "class_weights",
    "balanced",
    "seed",
    "monitor",
)


def saved_config(run: Path) -> TrainConfig:
    """The configuration a run directory saved; refuses directories that are not runs.

    A run killed before its first checkpoint has only its ``config.toml``: it restarts from
    the first epoch, as it would have run.
    """
    last = run / rundir.LAST
    if last.is_file():
        header = read_header(last)
        if header.state is None or "config" not in header.state:
            raise ZooError(f"--resume {run}: {rundir.LAST} is not a training checkpoint")
        return from_mapping(header.state["config"], where=str(last))
    if rundir.started_run(run):
        return load_toml(run / "config.toml")
    raise ZooError(f"--resume {run}: not a zoo run directory (no {rundir.LAST})")


def resume_config(run: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The configuration of the run in ``run`` with ``overrides`` (raw values, as from the
    command line) applied; refuses overrides that would make it a different run."""
    saved = saved_config(run)
    requested = from_mapping(overrides, base=saved, where="command line")
    for key in IDENTITY:
        mine, theirs = getattr(requested, key), getattr(saved, key)
        if key in overrides and mine != theirs:
            raise ZooError(
                f"--resume {run}: {key} differs from the run's "
                f"({_shown(mine)!r} vs {_shown(theirs)!r}); start a new run instead"
            )
    out = overrides.get("out")
    if out is not None and Path(out).resolve() != run.resolve():
        raise ZooError(f"--resume {run} continues in that directory; leave out --out {out}")
    return requested.replace(resume=str(run), out=str(run))


def _shown(value: Any) -> Any:
    """A setting as the user writes it (an image size as ``32`` or ``32x48``)."""
    from zoo.train.config import format_image_size

    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return format_image_size(value)
    return value
