"""The ``mlflow`` training callback: one MLflow run per zoo run, kept in step with the run
directory, which stays the source of truth.

- Start: the store answers (checked when the callback is built, before any epoch); the MLflow
  run is created, or continued when ``--resume`` restored its id; params and tags are logged.
- Every epoch: the epoch's numbers as metrics with ``step`` = the epoch. A store that is down
  or refuses the write costs one warning line and the epoch is sent again with the next one.
- A SIGKILL between logging an epoch and saving it makes the resumed run train and report that
  epoch again: the points already in the store are read back on resume and never sent twice.
- End: artifacts, then the run is FINISHED; a run that fails or is interrupted ends FAILED or
  KILLED (a SIGKILLed one stays RUNNING until it is resumed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.train.events import Callback, Run

DEFAULT_DB = "mlflow.db"
# Files of the run directory logged as artifacts at the end, when present (README.md is the
# model card); plots (*.png) are added to them.
ARTIFACTS = (
    "model.safetensors",
    "model_ema.safetensors",
    "config.json",
    "config.toml",
    "README.md",
    "metrics.jsonl",
    "metrics.csv",
    "summary.json",
)
# MLflow's HTTP defaults (7 retries with growing back-off, 120 s timeouts) would stall each
# epoch for minutes while a server is down; these apply unless the user set them.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
MAX_METRICS, MAX_PARAMS = 1000, 100  # MLflow's limits for one log_batch


def resolve_uri(explicit: str | None) -> str:
    """``tracking_uri=``, else ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` here; a relative
    SQLite path made absolute, so the saved state and the tags name one database."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path, sep, query = uri[len(prefix) :].partition("?")
        if path and path != ":memory:":
            uri = f"{prefix}{Path(path).resolve()}{sep}{query}"
    return uri


def store_error(uri: str, exc: BaseException) -> str:
    """Why the tracking store cannot be used, in one line: unreachable (a connection that
    failed), or refused by MLflow itself, whose explanation is passed on whole (its file store
    is in maintenance mode and says how to opt in with ``MLFLOW_ALLOW_FILE_STORE``)."""
    inner = innermost(exc)
    if isinstance(inner, OSError) or "Connection" in type(inner).__name__:
        return f"callback mlflow: cannot reach the tracking store {uri}: {one_line(exc)}"
    return f"callback mlflow: cannot use the tracking store {uri}: {one_line(exc, limit=None)}"


def innermost(exc: BaseException) -> BaseException:
    """The error at the bottom of a chain of causes (what MLflow wrapped)."""
    inner = exc
    for _ in range(10):
        cause = inner.__cause__ or (None if inner.__suppress_context__ else inner.__context__)
        if cause is None:
            break
        inner = cause
    return inner


def one_line(exc: BaseException, limit: int | None = 240) -> str:
    """An error as one line, at most ``limit`` characters. MLflow wraps the error that says
    what happened (refused connection, a database error) in messages of several lines: the
    innermost one is used."""
    inner = innermost(exc)
    lines = [
        line.strip()
        for line in str(inner).splitlines()
        if line.strip() and not line.strip().startswith(_DECORATION)
    ]
    text = lines[0] if lines else ""
    if inner is not exc:
        text = f"{type(inner).__name__}: {text}".rstrip(": ")
    text = text or type(exc).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


# What SQLAlchemy adds around a database's own message.
_DECORATION = ("(raised as a result of", "[SQL:", "[parameters:", "(Background on this error")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """MLflow and alembic log database creation, migrations and failures (with tracebacks)
    themselves; zoo reports each failure as one line, so their logs stay silent meanwhile."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def config_params(run: Run) -> dict[str, str]:
    """The resolved configuration as MLflow params: strings as they are, other values as JSON
    (``0.001``, ``true``, ``["hflip"]``); unset (None) settings left out, as in config.toml."""
    values = run.config.to_dict(saved_only=True)
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
        if value is not None
    }


def artifacts(out: Path) -> list[Path]:
    """The run directory's files worth keeping beside the MLflow run."""
    found = [out / name for name in ARTIFACTS if (out / name).is_file()]
    return found + sorted(p for p in out.glob("*.png") if p.is_file())


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MlflowCallback(Callback):
    """Logs one zoo run as one MLflow run; see the module docstring for what and when."""

    def __init__(
        self, experiment: str = "zoo", tracking_uri: str | None = None, run_name: str | None = None
    ) -> None:
        self.experiment = experiment
        self.uri = resolve_uri(tracking_uri)
        self.run_name = run_name
        self.client: Any = None
        self.run_id: str | None = None
        self.name: str | None = None  # the MLflow run's
        self.saved_uri: str | None = None  # where the resumed run was logged
        self.logged: dict[str, set[int]] = {}  # metric -> steps known to be in the store
        self.behind = False  # an epoch failed to reach the store: send the history again
        self.completed = False
        self.ended = False
        self.run: Run | None = None

    # --- the events ------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the store and read from it, so an unreachable one fails before training."""
        if self.uri.startswith(("http://", "https://")):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        try:
            import mlflow  # configures its loggers: before quiet() lowers them
        except ImportError as exc:
            raise ZooError(f"callback mlflow needs mlflow-skinny: {exc}") from None
        try:
            with quiet():
                client = mlflow.MlflowClient(tracking_uri=self.uri)
                client.get_experiment_by_name(self.experiment)
        except Exception as exc:
            raise ZooError(store_error(self.uri, exc)) from None
        self.client = client

    def on_fit_start(self, run: Run) -> None:
        self.run = run
        if self.client is None:  # an object given to Trainer(callbacks=...) in Python
            self.connect()
        try:
            with quiet():
                self._start(run)
        except ZooError:
            raise
        except Exception as exc:
            raise ZooError(f"cannot start the MLflow run in {self.uri}: {one_line(exc)}") from None

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        try:
            with quiet():
                self._log_epochs(run.history if self.behind else [record])
            self.behind = False
        except Exception as exc:
            self.behind = True
            run.note(
                f"warning: mlflow: epoch {record['epoch']} not logged to {self.uri}: "
                f"{one_line(exc)}; training goes on (the run directory has every epoch)"
            )
        return None

    def on_fit_end(self, run: Run, summary: dict[str, Any]) -> None:
        """Artifacts, then FINISHED; each step tried even when one before failed (one warning
        line for them all). close() does not try again."""
        self.completed = self.ended = True
        steps = [lambda: self._log_epochs(run.history)] if self.behind else []
        steps += [
            lambda p=p: self.client.log_artifact(self.run_id, str(p)) for p in artifacts(run.out)
        ]
        if summary.get("stopped"):
            steps.append(
                lambda: self.client.set_tag(self.run_id, "zoo.stopped", summary["stopped"])
            )
        steps.append(lambda: self.client.set_terminated(self.run_id, "FINISHED"))
        problems = []
        with quiet():
            for step in steps:
                try:
                    step()
                except Exception as exc:
                    problems.append(one_line(exc))
        if problems:
            run.note(
                f"warning: mlflow: the end of the run not logged to {self.uri}: {problems[0]} "
                f"(the run directory {run.out} is complete)"
            )

    def close(self) -> None:
        """End an MLflow run that on_fit_end did not: KILLED after an interrupt, else FAILED."""
        if self.client is None or self.run_id is None or self.ended:
            return
        self.ended = True
        status = "FINISHED" if self.completed else "KILLED" if _interrupted() else "FAILED"
        try:
            with quiet():
                self.client.set_terminated(self.run_id, status)
        except Exception as exc:
            if self.run is not None:
                self.run.note(f"warning: mlflow: run not marked {status}: {one_line(exc)}")

    def state_dict(self) -> dict[str, Any]:
        if self.run_id is None:
            return {}
        return {"run_id": self.run_id, "tracking_uri": self.uri}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")
        self.saved_uri = state.get("tracking_uri")

    # --- the work --------------------------------------------------------------------------

    def _start(self, run: Run) -> None:
        client = self.client
        existing = self._continue(run)
        if existing is None:
            created = client.create_run(
                self._experiment_id(), run_name=self.run_name or run.out.name
            )
            self.run_id, self.logged = created.info.run_id, {}
            self.name = created.info.run_name
        params = config_params(run)
        tags = self._tags(run)
        before = existing or {}
        changed = {k: v for k, v in params.items() if k in before and before[k] != v}
        if changed:  # MLflow params cannot change: the resumed run's new values go in a tag
            tags["zoo.resumed_with"] = json.dumps(changed)
        from mlflow.entities import Param, RunTag

        new = [Param(k, v) for k, v in params.items() if k not in before]
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        for batch in chunks(new, MAX_PARAMS) if new else [[]]:
            client.log_batch(self.run_id, params=batch, tags=tag_list)
            tag_list = []
        self._log_epochs(run.history)  # resumed epochs the store does not have yet
        run.note(
            f"mlflow: {'logging to' if existing is None else 'continuing'} run {self.name!r} of "
            f"experiment {self.experiment!r} in {self.uri} (run id {self.run_id})"
        )

    def _continue(self, run: Run) -> dict[str, str] | None:
        """Continue the MLflow run of a resumed zoo run (RUNNING again, the points it holds
        known): its params; None when a new one must start (with a note why). Its id is the
        state saved with the checkpoint, or for a run killed before its first checkpoint the
        one tagged with this run directory."""
        if self.run_id is not None and self.saved_uri and self.saved_uri != self.uri:
            run.note(
                f"mlflow: this run was logged to {self.saved_uri}; it goes on in a new MLflow "
                f"run in {self.uri}"
            )
            return None
        if self.run_id is None and run.config.resume:
            self.run_id = self._tagged(run.out)
        if self.run_id is None:
            return None
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_run(self.run_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            found = None
        if found is None or found.info.lifecycle_stage != "active":
            run.note(
                f"mlflow: MLflow run {self.run_id} is not in {self.uri} (deleted?); the run "
                "goes on in a new MLflow run"
            )
            return None
        self.client.update_run(self.run_id, status="RUNNING")
        self.name = found.info.run_name
        self.logged = {
            key: {m.step for m in self.client.get_metric_history(self.run_id, key)}
            for key in found.data.metrics
        }
        return dict(found.data.params)

    def _tagged(self, out: Path) -> str | None:
        """The latest MLflow run of this experiment tagged with the run directory ``out``."""
        where = str(out.resolve())
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None or "'" in where:
            return None
        found = self.client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`zoo.run_dir` = '{where}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        client, name = self.client, self.experiment
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return client.create_experiment(name)
            except MlflowException:  # another run created it meanwhile
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise ZooError(
                f"MLflow experiment {name!r} in {self.uri} is deleted: restore it or choose "
                "another experiment="
            )
        return found.experiment_id

    def _tags(self, run: Run) -> dict[str, str]:
        from zoo import __version__
        from zoo.plugins.build import get_registry

        plugins = sorted(p.source for p in get_registry().plugins() if p.status == "ok")
        return {
            "zoo.architecture": run.config.arch,
            "zoo.dataset": run.config.data,
            "zoo.plugins": ", ".join(plugins),
            "zoo.version": __version__,
            "zoo.world_size": str(run.world_size),
            "zoo.device": run.device,
            "zoo.run_dir": str(run.out.resolve()),
            "mlflow.source.name": "zoo train",
        }

    def _log_epochs(self, history: list[dict[str, Any]]) -> None:
        """Every number of these epochs that the store does not hold yet, ``step`` = epoch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, int(record["epoch"]))
            for record in history
            for key, value in record.items()
            if key != "epoch"
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and int(record["epoch"]) not in self.logged.get(key, ())
        ]
        for batch in chunks(metrics, MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=batch)
            for metric in batch:
                self.logged.setdefault(metric.key, set()).add(metric.step)


def _interrupted() -> bool:
    """Whether close() runs because of Ctrl-C or SIGTERM (zoo's exit code 130); the trainer
    calls it while handling the exception that ended the run."""
    exc = sys.exc_info()[1]
    return exc is None or isinstance(exc, KeyboardInterrupt) or getattr(exc, "exit_code", 0) == 130
