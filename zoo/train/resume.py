"""``--resume``: the configuration of a run to continue, and what may not change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.errors import ZooError, shown
from zoo.models.weights import read_header
from zoo.train import rundir
from zoo.train.config import TrainConfig, from_mapping, load_toml

# Settings a resumed run must share with the original (the others may change on resume).
IDENTITY = (
    "arch",
    "data",
    "val_data",
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


# Settings that name components, and the kind of each.
COMPONENTS = {
    "arch": "architecture",
    "data": "dataset",
    "val_data": "dataset",
    "aug": "augmentation",
    "loss": "loss",
    "optimizer": "optimizer",
    "scheduler": "scheduler",
    "callback": "callback",
}


def resume_config(run: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The configuration of the run in ``run`` with ``overrides`` (raw values, as from the
    command line) applied; refuses overrides that would make it a different run."""
    saved = qualified(saved_config(run))
    requested = from_mapping(overrides, base=saved, where="command line")
    for key in IDENTITY:
        if key not in overrides:
            continue
        mine, theirs = getattr(requested, key), getattr(saved, key)
        if not (same_components(key, mine, theirs) if key in COMPONENTS else mine == theirs):
            raise ZooError(
                f"--resume {run}: {key} differs from the run's "
                f"({shown(_as_written(mine))} vs {shown(_as_written(theirs))}); start a new run "
                "instead"
            )
        # The run's own (qualified) name: the one given may have become ambiguous since.
        requested = requested.replace(**{key: theirs})
    out = overrides.get("out")
    if out is not None and Path(out).resolve() != run.resolve():
        raise ZooError(f"--resume {run} continues in that directory; leave out --out {out}")
    return requested.replace(resume=str(run), out=str(run))


def _as_written(value: Any) -> Any:
    """A setting as the user writes it (an image size as ``32`` or ``32x48``)."""
    from zoo.train.config import format_image_size

    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return format_image_size(value)
    return value


def qualified(cfg: TrainConfig) -> TrainConfig:
    """A saved configuration with every component by its qualified name.

    Runs record qualified names (``zoo:simplecnn``); configurations saved before they did hold
    bare ones, which resolve to what they meant: when a plugin installed since registers the
    same name, to the built-in one (the only one there was), else the choices are listed.
    """
    changes: dict[str, Any] = {}
    for key, kind in COMPONENTS.items():
        value = getattr(cfg, key)
        if value is None:
            continue
        texts = value if isinstance(value, list) else [value]
        done = [_resolve(kind, text, prefer="zoo").recorded for text in texts]
        changes[key] = done if isinstance(value, list) else done[0]
    return cfg.replace(**changes)


def _resolve(kind: str, text: str, prefer: str | None = None) -> Any:
    """A saved component setting resolved (``--data`` through its data source)."""
    from zoo.data.source import resolve_data
    from zoo.plugins.components import resolve

    if kind == "dataset":
        return resolve_data(text, prefer=prefer)
    return resolve(kind, text, prefer=prefer)


def same_components(key: str, given: Any, saved: Any) -> bool:
    """Whether a component setting given on resume names what the run used: the same
    parameters, and the same component (``simplecnn`` for the run's ``zoo:simplecnn``, even
    when another plugin has registered a ``simplecnn`` since)."""
    from zoo.plugins.components import resolve
    from zoo.plugins.specs import parse_spec

    kind = COMPONENTS[key]
    mine = given if isinstance(given, list) else [given]
    theirs = saved if isinstance(saved, list) else [saved]
    if len(mine) != len(theirs):
        return False
    if kind == "dataset":  # --data's forms (a path, NAME:LOCATION) resolve through its source
        if mine[0] is None or theirs[0] is None:
            return mine[0] == theirs[0]
        try:
            a, b = _resolve(kind, mine[0]), _resolve(kind, theirs[0], prefer="zoo")
        except ZooError:
            return False
        return a.component == b.component and a.spec.params == b.spec.params
    for text, recorded in zip(mine, theirs, strict=True):
        a, b = parse_spec(text, kind=kind), parse_spec(recorded, kind=kind)
        if a.params != b.params:
            return False
        if a.ref == b.ref or (a.plugin is None and a.name == b.name):
            continue
        try:
            if resolve(kind, a).component != resolve(kind, b).component:
                return False
        except ZooError:
            return False
    return True
