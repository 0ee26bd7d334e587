"""What a ``zoo tune`` study found: every trial as a row (the table and ``--json``), the best
trial's settings as ``DIR/best.toml`` (a ready ``zoo train --config`` file) and Optuna's plots.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import shown
from zoo.tasks.tune_study import quiet_optuna
from zoo.train.config import dump_toml

if TYPE_CHECKING:
    from zoo.tasks.tune import Tune


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
    from zoo.files.atomic import write_output

    best = best_trial(study)
    if best is None or "config" not in best.user_attrs:
        return None
    path = tune.out / "best.toml"
    header = (
        f"# zoo tune: trial {best.number} of study {shown(tune.study)}, "
        f"{tune.metric} {best.value:.6g} ({best.user_attrs.get('run_dir', '')})\n"
        f"# zoo train --config {path} reproduces it\n"
    )
    body = dump_toml({"zoo_version": __version__, **best.user_attrs["config"]})
    write_output(path, (header + body).encode(), "--out")
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
