"""zoo-mlflow: log zoo training runs to MLflow, as the training callback ``mlflow``.

``zoo train --callback mlflow[:experiment=NAME,tracking_uri=URI,run_name=NAME]`` logs the
resolved configuration as params, every epoch's metrics (``step`` = the epoch), tags saying
where the run came from, and at the end the weights, configs, metrics files and plots as
artifacts. The store is ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the SQLite database
``mlflow.db`` in the working directory. See docs/tracking.md.

Importing this module does not import mlflow: the factory does, when a run uses the callback.
"""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register, hookimpl


def mlflow(
    experiment: str = "zoo", tracking_uri: str | None = None, run_name: str | None = None
) -> Any:
    """Log params, per-epoch metrics and artifacts to MLflow (SQLite mlflow.db by default).

    The store is ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the
    working directory. It is checked before any epoch trains (and before the run directory is
    written): an unreachable store is a one-line error, not a run that silently goes untracked.
    """
    from zoo_mlflow.callback import MlflowCallback

    callback = MlflowCallback(experiment=experiment, tracking_uri=tracking_uri, run_name=run_name)
    callback.connect()
    return callback


@hookimpl
def zoo_register_callbacks(register: Register) -> None:
    register("mlflow", mlflow)
