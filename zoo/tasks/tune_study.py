"""Optuna's side of ``zoo tune``: pruners and samplers by name, the RDB storage with
heartbeats, and the study created or continued, checked against the invocation.

Workers hold an Optuna heartbeat while they train. A trial whose worker died (killed, machine
lost) goes stale after two heartbeats, is marked failed and queued again with the same
parameters (``MAX_RETRY`` times at most); ``zoo.tasks.tune_trials`` then continues the dead
trial's run directory from its last checkpoint when no live process still holds it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError, did_you_mean, shown

if TYPE_CHECKING:
    from zoo.tasks.tune import Tune

MAX_RETRY = 3
SETTINGS_ATTR = "zoo.settings"
PRUNERS = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "RandomSampler"}


def require_optuna() -> Any:
    """optuna is an optional dependency: ``pip install 'zoo[tune]'``."""
    try:
        import optuna
    except ImportError:
        raise ZooError("zoo tune needs optuna: pip install 'zoo[tune]'") from None
    return optuna


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Heartbeats and retries are marked experimental by Optuna: zoo relies on them knowingly."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _optuna_choice(text: str, table: dict[str, str], what: str, module: str) -> Any:
    """``NAME[:k=v,...]`` to an Optuna pruner or sampler, its keyword arguments checked."""
    optuna = require_optuna()
    from zoo.plugins.specs import check_params, parse_spec

    spec = parse_spec(text, kind=what)
    if spec.name not in table:
        raise ZooError(
            f"--{what} {spec.name}: unknown{did_you_mean(spec.name, table)} "
            f"(choose from {', '.join(table)})"
        )
    cls = getattr(getattr(optuna, module), table[spec.name])
    label = f"--{what} {spec.name} (optuna.{module}.{cls.__name__})"
    check_params(label, cls, spec.params, ())
    try:
        with quiet_optuna():
            return cls(**spec.params)
    except (TypeError, ValueError) as exc:
        raise ZooError(f"{label}: {exc}") from None


def build_pruner(text: str) -> Any:
    return _optuna_choice(text, PRUNERS, "pruner", "pruners")


def build_sampler(text: str) -> Any:
    """``grid`` queues every combination up front (``setup``); the sampler then has nothing
    left to draw."""
    return _optuna_choice(text, SAMPLERS, "sampler", "samplers")


def shown_url(url: str) -> str:
    """A storage URL without its password, for messages and JSON."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(tune: Tune) -> Any:
    """Optuna's RDB storage with heartbeats: a stale trial is failed and queued again."""
    optuna = require_optuna()
    engine: dict[str, Any] = {}
    if tune.storage.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}  # several workers write to one file
    try:
        with quiet_optuna():
            return optuna.storages.RDBStorage(
                tune.storage,
                engine_kwargs=engine,
                heartbeat_interval=tune.heartbeat,
                grace_period=2 * tune.heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRY, inherit_intermediate_values=True
                ),
            )
    except Exception as exc:  # SQLAlchemy's, a missing database driver, a bad URL
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZooError(f"cannot open the storage {tune.shown_storage}: {reason}") from None


def setup(tune: Tune) -> Any:
    """Open (or create) the study and check it is this one; queue the grid. Returns it."""
    optuna = require_optuna()
    if tune.storage == f"sqlite:///{tune.out / 'study.db'}":
        try:
            tune.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ZooError(f"cannot create --out {tune.out}: {exc.strerror or exc}") from None
    storage = open_storage(tune)
    with quiet_optuna():
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=tune.study,
                direction=tune.direction,
                sampler=build_sampler(tune.sampler),
                pruner=build_pruner(tune.pruner),
                load_if_exists=True,
            )
        except ValueError as exc:
            raise ZooError(f"study {shown(tune.study)} in {tune.shown_storage}: {exc}") from None
    if study.direction.name.lower() != tune.direction:
        raise ZooError(
            f"study {shown(tune.study)} in {tune.shown_storage} is to "
            f"{study.direction.name.lower()}, but {tune.metric} is to {tune.direction}"
        )
    saved = study.user_attrs.get(SETTINGS_ATTR)
    if saved is None:
        if not study.trials:
            leftovers = sorted(p.name for p in tune.out.glob("trial-*"))
            if leftovers:
                raise ZooError(
                    f"--out {tune.out} holds trial runs ({leftovers[0]}, ...) of another study; "
                    "use another --out"
                )
        study.set_user_attr(SETTINGS_ATTR, tune.settings)
    elif saved != tune.settings:
        changed = sorted(
            k
            for k in {*saved.get("train", {}), *tune.settings["train"]}
            if saved.get("train", {}).get(k) != tune.settings["train"].get(k)
        )
        if saved.get("search") != tune.settings["search"]:
            changed.append("[search]")
        raise ZooError(
            f"study {shown(tune.study)} in {tune.shown_storage} was started with other settings "
            f"({', '.join(changed)} differ); use another --study or --out"
        )
    for params in tune.grid[: tune.trials]:
        study.enqueue_trial(params, skip_if_exists=True)
    return study


def load_study(tune: Tune) -> Any:
    optuna = require_optuna()
    with quiet_optuna():
        return optuna.load_study(
            study_name=tune.study,
            storage=open_storage(tune),
            sampler=build_sampler(tune.sampler),
            pruner=build_pruner(tune.pruner),
        )


def locks(out: Path) -> Path:
    """Where a study's workers keep their OS locks (released by the OS when a process dies)."""
    folder = out / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def origin(trial: Any) -> int:
    """The number of the trial that a retry stands for (its own number otherwise)."""
    return int(trial.system_attrs.get("failed_trial", trial.number))
