"""``zoo tune``: hyperparameter search over ``zoo train`` settings with Optuna.

A study lives in an Optuna RDB storage (SQLite ``DIR/study.db`` unless ``--storage`` names
another database), so any number of worker processes, on this machine or others, can work on it
together. Each trial is an ordinary run in ``DIR/trial-NNNN`` (config.toml, weights, metrics,
checkpoints), trained by ``zoo.train.Trainer`` with a callback that reports the monitored metric
to Optuna after every epoch and stops the run when the pruner says so.

Workers hold an Optuna heartbeat while they train. A trial whose worker died (killed, machine
lost) goes stale after two heartbeats, is marked failed and queued again with the same
parameters; the retry continues the dead trial's run directory from its last checkpoint when no
live process still holds it. ``--trials N`` counts a trial and its retries once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError, did_you_mean
from zoo.tasks.search_space import FIXED, SearchSpace, parse_search
from zoo.train.config import TrainConfig, dump_toml, from_mapping, read_toml
from zoo.train.events import Callback

if TYPE_CHECKING:
    from zoo.train.events import Run

DEFAULT_TRIALS = 20
HEARTBEAT_SECONDS = 10
MAX_RETRY = 3
SETTINGS_ATTR = "zoo.settings"
PRUNERS = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "RandomSampler"}
# Settings a tune config may not fix, with the reason (monitor and threads are fine there).
NOT_IN_CONFIG = ("out", "resume", "overwrite")


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
        from zoo.train.metrics import mode_for

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
    from zoo.train.parts import monitored

    try:
        monitored(base, True, lambda text: None)
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
            raise ZooError(f"study {tune.study!r} in {tune.shown_storage}: {exc}") from None
    if study.direction.name.lower() != tune.direction:
        raise ZooError(
            f"study {tune.study!r} in {tune.shown_storage} is to "
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
            f"study {tune.study!r} in {tune.shown_storage} was started with other settings "
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


def default_threads(jobs: int) -> int:
    """CPU threads per worker: this process's cores shared out between the workers."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // jobs)


class Pruning(Callback):
    """Reports the monitored metric to the Optuna trial after every epoch, and stops the run
    with the reason ``pruned`` (kept in summary.json) when the pruner says so."""

    def __init__(
        self, trial: Any, reported: set[int], on_change: Callable[[], None] | None = None
    ) -> None:
        self.trial = trial
        self.reported = reported  # epochs a killed attempt of this trial already reported
        self.on_change = on_change

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        epoch = int(record["epoch"])
        if epoch not in self.reported:
            self.trial.report(float(record[run.best.metric]), epoch)
            self.reported.add(epoch)
        if self.on_change is not None:
            self.on_change()
        return "pruned" if self.trial.should_prune() else None


class Worker:
    """Runs trials of the study until it has ``--trials`` of them, or ``--timeout`` passes.

    Taking the next trial is serialised between the workers of this machine by a file lock in
    DIR/.locks, so the study never runs more trials than asked; a trial's run directory is locked
    while it trains, so a retry never writes where a live process (whose heartbeat was only
    late) does.
    """

    def __init__(
        self, tune: Tune, threads: int, on_change: Callable[[], None] | None = None
    ) -> None:
        self.tune = tune
        self.threads = threads
        self.on_change = on_change or (lambda: None)
        self.held: Any = None  # the study lock, while this worker holds it
        self.current: int | None = None

    def run(self) -> None:
        from zoo.train.signals import sigterm_as_interrupt

        with sigterm_as_interrupt():  # a scheduler's SIGTERM stops a worker as Ctrl-C does
            self._run()

    def _run(self) -> None:
        from filelock import FileLock

        from zoo.train.trainer import Interrupted

        tune = self.tune
        study = load_study(tune)
        lock = FileLock(str(locks(tune.out) / "study.lock"))
        deadline = None if tune.timeout is None else time.monotonic() + tune.timeout
        while deadline is None or time.monotonic() < deadline:
            lock.acquire()
            self.held = lock
            try:
                step = self._next(study)
                if step == "run":
                    self._trial(study)
            except KeyboardInterrupt:
                raise Interrupted(
                    "run the same command again to continue the study "
                    "(the interrupted trial continues from its last epoch)"
                ) from None
            finally:
                self._release()
            self.on_change()
            if step == "done":
                return
            if step == "wait":
                time.sleep(min(tune.heartbeat, 1.0))

    def _trial(self, study: Any) -> None:
        """Take the next trial and run it (``objective``)."""
        try:
            with quiet_optuna():
                study.optimize(self.objective, n_trials=1, catch=(ZooError,))
        except KeyboardInterrupt:
            self._retry_interrupted(study)
            raise
        except (ValueError, RuntimeError):
            # Optuna refuses to record the result of a trial that another worker has already
            # failed as stale (this worker's heartbeat was late) and queued again: the retry
            # redoes it, so this is no failure of the study.
            if not self._taken_over(study):
                raise
        finally:
            self.current = None

    def _taken_over(self, study: Any) -> bool:
        import optuna

        number = self.current
        trials = study.get_trials(deepcopy=False)
        mine = [t for t in trials if t.number == number]
        retried = any(number in (t.system_attrs.get("retry_history") or []) for t in trials)
        return bool(mine) and mine[0].state == optuna.trial.TrialState.FAIL and retried

    def _release(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None

    def _next(self, study: Any) -> str:
        """``run`` a trial, ``wait`` for running ones (they may die and need a retry), or
        ``done``."""
        import optuna

        states = optuna.trial.TrialState
        with quiet_optuna():
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        if any(t.state == states.WAITING for t in trials):
            return "run"
        if len({origin(t) for t in trials}) < self.tune.trials:
            return "run"
        if any(t.state == states.RUNNING for t in trials):
            return "wait"
        return "done"

    def _retry_interrupted(self, study: Any) -> None:
        """Ctrl-C or SIGTERM stopped a trial: queue it again, as a stale one would be."""
        import optuna

        number = self.current
        if number is None:
            return
        frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
        if frozen is not None and frozen.state == optuna.trial.TrialState.FAIL:
            with quiet_optuna():
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRY, inherit_intermediate_values=True
                )
                retry(study, frozen)

    def objective(self, trial: Any) -> float:
        """One trial: an ordinary zoo run in DIR/trial-NNNN (or the run a retry continues)."""
        import optuna

        from zoo.train.trainer import Interrupted, Trainer

        self._release()  # the trial is taken: other workers may take the next one
        self.current = trial.number
        if trial.user_attrs.get("error"):  # a retry inherits its failed attempt's attributes
            trial.set_user_attr("error", None)
        tune = self.tune
        try:
            values = tune.space.suggest(trial)
            cfg = tune.space.apply(tune.base, values)
            if cfg.threads is None:
                cfg = cfg.replace(threads=self.threads)
            with self._run_dir(trial) as (run_dir, resume):
                if resume:
                    from zoo.train.resume import resume_config

                    cfg = resume_config(run_dir, {})
                else:
                    cfg = cfg.replace(out=str(run_dir))
                saved = {k: v for k, v in cfg.to_dict(saved_only=True).items() if k != "out"}
                trial.set_user_attr("run_dir", str(run_dir))
                trial.set_user_attr("host", socket.gethostname())
                trial.set_user_attr("config", saved)
                # a retry inherits the epochs its killed attempt reported
                trials = {t.number: t for t in trial.study.get_trials(deepcopy=False)}
                reported = set(trials[trial.number].intermediate_values)
                result = Trainer(cfg, callbacks=[Pruning(trial, reported, self.on_change)]).fit()
        except Interrupted:
            trial.set_user_attr("error", "interrupted")
            raise KeyboardInterrupt from None
        except ZooError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        except Exception as exc:  # a trial's failure (out of memory, a plugin's bug) is its own
            message = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error", message)
            raise ZooError(message, exit_code=1) from exc
        if result.stopped == "pruned":
            raise optuna.TrialPruned(f"pruned after epoch {len(result.history)}")
        value = (result.summary.get("best") or {}).get("value")
        if value is None or not math.isfinite(value):
            message = f"{tune.metric} is {value}: nothing to compare"
            trial.set_user_attr("error", message)
            raise ZooError(message, exit_code=1)
        return float(value)

    @contextlib.contextmanager
    def _run_dir(self, trial: Any) -> Iterator[tuple[Path, bool]]:
        """The trial's run directory, locked while it trains, and whether to resume it.

        A retry takes over the run directory of the attempt it stands for when no process
        holds that directory (its writer is dead), resuming from the last checkpoint; otherwise
        it starts afresh in its own directory.
        """
        from filelock import FileLock, Timeout

        from zoo.train import rundir

        out = self.tune.out
        inherited = trial.user_attrs.get("run_dir")
        candidates = [Path(inherited)] if inherited and Path(inherited).is_dir() else []
        candidates.append(out / f"trial-{trial.number:04d}")
        for path in candidates:
            lock = FileLock(str(locks(path.parent) / f"{path.name}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # a live process still writes there
            try:
                resume = rundir.holds_run(path) and (
                    (path / rundir.LAST).is_file() or rundir.started_run(path)
                )
                yield path, resume
                return
            finally:
                lock.release()
        raise ZooError(f"trial {trial.number}: every run directory it could use is in use")


# --- what a study reports ----------------------------------------------------------------------


def trial_rows(study: Any, tune: Tune) -> list[dict[str, Any]]:
    """Every trial of the study, for the table and ``--json``."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    retried_as = {}
    for t in trials:
        previous = t.system_attrs.get("retry_history") or []
        if previous:
            retried_as[previous[-1]] = t.number
    rows = []
    for t in trials:
        state = {"fail": "failed"}.get(t.state.name.lower(), t.state.name.lower())
        value = t.value
        if value is None and t.intermediate_values and state in ("running", "pruned"):
            value = t.intermediate_values[max(t.intermediate_values)]
        rows.append(
            {
                "number": t.number,
                "state": state,
                "params": tune.space.decode(dict(t.params)),
                "value": value,
                "epochs": len(t.intermediate_values),
                "run_dir": t.user_attrs.get("run_dir"),
                "duration_seconds": (
                    round(t.duration.total_seconds(), 3) if t.duration is not None else None
                ),
                "retry_of": t.system_attrs.get("failed_trial"),
                "retried_as": retried_as.get(t.number),
                "error": t.user_attrs.get("error"),
            }
        )
    return rows


def best_trial(study: Any) -> Any | None:
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def write_best(study: Any, tune: Tune) -> Path | None:
    """``DIR/best.toml``: the best trial's settings, a ready ``zoo train --config`` file."""
    from zoo import __version__
    from zoo.files.atomic import atomic_write

    best = best_trial(study)
    if best is None or "config" not in best.user_attrs:
        return None
    path = tune.out / "best.toml"
    header = (
        f"# zoo tune: trial {best.number} of study {tune.study!r}, "
        f"{tune.metric} {best.value:.6g} ({best.user_attrs.get('run_dir', '')})\n"
        f"# zoo train --config {path} reproduces it\n"
    )
    body = dump_toml({"zoo_version": __version__, **best.user_attrs["config"]})
    atomic_write(path, (header + body).encode())
    return path


def write_plots(study: Any, tune: Tune) -> tuple[list[Path], list[str]]:
    """Optimization history and parameter importances as PNG in DIR (Optuna's matplotlib
    module on the Agg canvas); what could not be drawn is said, not raised."""
    import optuna

    from zoo.files.atomic import atomic_write
    from zoo.tasks import plots

    if not plots.available():
        return [], ["no plots: matplotlib is not installed (pip install 'zoo[tune]')"]
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varying = [
        name
        for name in {n for t in complete for n in t.params}
        if len({json.dumps(t.params.get(name)) for t in complete}) > 1
    ]
    wanted: list[tuple[str, Callable[[], Any]]] = []
    notes = []
    if complete:
        wanted.append(
            (
                "optimization_history.png",
                lambda: views.plot_optimization_history(study, target_name=tune.metric),
            )
        )
    else:
        notes.append("no optimization history plot: no trial has completed")
    if len(complete) >= 2 and varying:
        wanted.append(
            (
                "param_importances.png",
                lambda: views.plot_param_importances(study, target_name=tune.metric),
            )
        )
    else:
        notes.append(
            "no parameter importances: they need 2 completed trials whose parameters differ"
        )
    written = []
    for name, draw in wanted:
        try:
            with quiet_optuna(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            atomic_write(tune.out / name, buffer.getvalue())
            written.append(tune.out / name)
        except Exception as exc:  # a plot is a convenience: say why it is missing
            notes.append(f"no {name}: {type(exc).__name__}: {exc}")
    return written, notes
