"""Running the trials of a ``zoo tune`` study: ``Worker`` takes trials until the study has
``--trials`` of them, each an ordinary run trained by ``zoo.train.Trainer`` with ``Pruning``,
the callback that reports the monitored metric to Optuna after every epoch.

``--trials N`` counts a trial and its retries once. A retry continues the run directory of the
attempt it stands for from its last checkpoint when no live process still holds it.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError
from zoo.tasks.tune_study import MAX_RETRY, load_study, locks, origin, quiet_optuna
from zoo.train.events import Callback

if TYPE_CHECKING:
    from zoo.tasks.tune import Tune
    from zoo.train.events import Run


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
