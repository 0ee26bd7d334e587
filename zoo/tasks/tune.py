"""``zoo tune``: hyperparameter search over ``zoo train`` settings with Optuna.

A study lives in an Optuna RDB storage (SQLite ``DIR/study.db`` unless ``--storage`` names
another database), so any number of worker processes, on this machine or others, can work on it
together. Each trial is an ordinary run in ``DIR/trial-NNNN`` (config.toml, weights, metrics,
checkpoints), trained by ``zoo.train.Trainer`` with a callback that reports the monitored metric
to Optuna after every epoch and stops the run when the pruner says so.

The search is four modules: this one checks an invocation (``Tune``: the base settings, the
space, the study's name, storage and folder) before anything is written; ``tune_study`` is
Optuna's side (pruners and samplers by name, the storage, the study created or continued);
``tune_trials`` runs trials (``Worker``); ``tune_results`` says what a study found (the table,
``best.toml``, the plots).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.files.reading import read_toml
from zoo.tasks.search_space import FIXED, SearchSpace, parse_search
from zoo.tasks.tune_study import build_pruner, build_sampler, shown_url
from zoo.train.config import TrainConfig, from_mapping

DEFAULT_TRIALS = 20
HEARTBEAT_SECONDS = 10
# Settings a tune config may not fix, with the reason (monitor and threads are fine there).
NOT_IN_CONFIG = ("out", "resume", "overwrite")


@dataclass
class Tune:
    """A checked ``zoo tune`` invocation: the base settings, the space and the study."""

    config: Path
    base: TrainConfig
    space: SearchSpace
    settings: dict[str, Any]  # what the study was started with (compared when continuing)
    trials: int
    timeout: float | None
    jobs: int
    storage: str
    study: str
    out: Path
    pruner: str
    sampler: str
    heartbeat: int
    grid: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return self.base.monitor

    @property
    def direction(self) -> str:
        from zoo.labeling.metrics import mode_for

        return "maximize" if mode_for(self.base.monitor) == "max" else "minimize"

    @property
    def shown_storage(self) -> str:
        return shown_url(self.storage)


def read_config(path: Path) -> dict[str, Any]:
    """The TOML file: train settings plus the ``[search]`` table."""
    return read_toml(path)


def prepare(
    config: Path,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    jobs: int = 1,
    storage: str | None = None,
    study: str | None = None,
    out: Path | None = None,
    pruner: str = "median",
    sampler: str = "tpe",
    heartbeat: int = HEARTBEAT_SECONDS,
) -> Tune:
    """Check everything a study needs before anything is written or any trial starts."""
    where = str(config)
    values = read_config(config)
    values.pop("zoo_version", None)
    search = values.pop("search", None)
    if search is None:
        raise ZooError(f"{where}: no [search] table: name the settings to vary in it")
    for key in values:
        name = key.replace("-", "_")
        if name in NOT_IN_CONFIG:
            raise ZooError(f"{where}: {key} cannot be set for zoo tune: {FIXED[name]}")
    base = from_mapping(values, where=where)
    if base.nproc != 1:
        raise ZooError(f"{where}: nproc must be 1: {FIXED['nproc']}")
    from zoo.labeling.task import task_named, task_of
    from zoo.train.parts import monitored

    # What the task of the config's `task` (single-label unless set) defaults to, spelled out:
    # the search varies and checks these, and the study's objective is the monitored metric.
    task = task_named(task_of(base.to_dict()))
    base = base.replace(
        arch=base.arch or task.default_arch,
        loss=base.loss or task.default_loss,
        monitor=base.monitor or task.default_monitor,
    )
    try:
        monitored(base, True, lambda text: None, task)
    except ZooError as exc:
        raise ZooError(f"{where}: {exc}") from None
    space = parse_search(search, where)
    space.check(base)
    for ok, message in (
        (trials is None or trials >= 1, "--trials must be at least 1"),
        (timeout is None or timeout > 0, "--timeout must be positive"),
        (jobs >= 1, "--jobs must be at least 1"),
        (heartbeat >= 1, "--heartbeat must be at least 1 second"),
    ):
        if not ok:
            raise ZooError(message)
    build_pruner(pruner)
    build_sampler(sampler)
    grid: list[dict[str, Any]] = []
    if sampler.split(":")[0].strip() == "grid":
        grid = space.grid()
        if trials is not None and trials > len(grid):
            raise ZooError(f"--trials {trials}: the grid has only {len(grid)} combinations")
    name = study or config.stem
    out = Path(out) if out is not None else Path("runs") / f"tune-{name}"
    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file, not a directory")
    url = storage or f"sqlite:///{out / 'study.db'}"
    settings = {
        "train": {k: v for k, v in base.to_dict(saved_only=True).items() if k != "out"},
        "search": json.loads(json.dumps(search)),
    }
    return Tune(
        config=Path(config).resolve(),
        base=base,
        space=space,
        settings=settings,
        trials=trials if trials is not None else (len(grid) if grid else DEFAULT_TRIALS),
        timeout=timeout,
        jobs=jobs,
        storage=url,
        study=name,
        out=out,
        pruner=pruner,
        sampler=sampler,
        heartbeat=heartbeat,
        grid=grid,
    )
