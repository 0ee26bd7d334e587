"""``zoo tune``: a hyperparameter search whose trials are ordinary zoo runs (zoo.tasks.tune).

This process checks the input, creates or opens the study, and either runs the trials itself
(``--jobs 1``) or starts J worker processes (``zoo tune ... --worker``) and shows the study's
trials from the database while they work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from zoo.cli.common import command, print_json, stdout
from zoo.errors import ZooError


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)


@command
def tune(
    config: str = typer.Option(
        ...,
        "--config",
        metavar="FILE",
        help="TOML file: zoo train settings plus a [search] table of what to vary.",
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        metavar="N",
        help="Trials the study should have in all, earlier runs and other workers included "
        "(default: 20; with --sampler grid, every combination).",
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", metavar="S", help="Start no new trial after S seconds."
    ),
    jobs: int = typer.Option(
        1, "--jobs", metavar="J", help="Worker processes on this machine, sharing its cores."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        metavar="URL",
        help="Optuna RDB storage (sqlite:///..., postgresql://...; default: DIR/study.db).",
    ),
    study: str | None = typer.Option(
        None, "--study", metavar="NAME", help="Study name (default: the config file's name)."
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Directory of the trials' runs, best.toml and plots (default: runs/tune-NAME).",
    ),
    pruner: str = typer.Option(
        "median",
        "--pruner",
        metavar="NAME[:K=V,...]",
        help="median | hyperband | none, with Optuna's arguments "
        "(median:n_startup_trials=5,n_warmup_steps=0).",
    ),
    sampler: str = typer.Option(
        "tpe",
        "--sampler",
        metavar="NAME[:K=V,...]",
        help="tpe | random | grid (every combination of the choices, in order).",
    ),
    heartbeat: int = typer.Option(
        10,
        "--heartbeat",
        metavar="S",
        help="Seconds between a worker's signs of life; a trial silent for twice as long "
        "is failed and retried.",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print the study as JSON (every trial) instead of the table."
    ),
    worker: bool = typer.Option(False, "--worker", hidden=True),
) -> None:
    """Search hyperparameters with Optuna: each trial is an ordinary zoo run in
    DIR/trial-NNNN, weak ones are pruned after an epoch, and the best settings are written
    to DIR/best.toml. Run the same command again, or on other machines with the same
    --storage, to continue the study."""
    from zoo.tasks.tune import prepare
    from zoo.tasks.tune_study import require_optuna
    from zoo.tasks.tune_trials import Worker, default_threads

    require_optuna()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the table says what happened
    spec = prepare(
        Path(config),
        trials=trials,
        timeout=timeout,
        jobs=jobs,
        storage=storage,
        study=study,
        out=None if out is None else Path(out),
        pruner=pruner,
        sampler=sampler,
        heartbeat=heartbeat,
    )
    if worker:
        Worker(spec, default_threads(jobs)).run()
        return
    _coordinate(spec, json_out)


def _coordinate(spec: Any, json_out: bool) -> None:
    from zoo.tasks.tune_results import best_trial, trial_rows, write_best, write_plots
    from zoo.tasks.tune_study import setup
    from zoo.tasks.tune_trials import Worker, default_threads

    study = setup(spec)
    console = stdout()
    live = None
    if not json_out and console.is_terminal:
        from rich.live import Live

        live = Live(_table(study, spec), console=console, auto_refresh=False)
        live.start()

    def refresh() -> None:
        if live is not None:
            live.update(_table(study, spec), refresh=True)

    failures: list[str] = []
    try:
        if spec.jobs == 1:
            Worker(spec, default_threads(1), on_change=refresh).run()
        else:
            failures = _workers(spec, refresh)
    finally:
        if live is not None:
            refresh()
            live.stop()
    rows = trial_rows(study, spec)
    best_path = write_best(study, spec)
    plots, notes = write_plots(study, spec)
    best = best_trial(study)
    if json_out:
        print_json(
            {
                "study": spec.study,
                "storage": spec.shown_storage,
                "metric": spec.metric,
                "direction": spec.direction,
                "out": str(spec.out),
                "best": None
                if best is None
                else {
                    "number": best.number,
                    "value": best.value,
                    "params": spec.space.decode(dict(best.params)),
                    "run_dir": best.user_attrs.get("run_dir"),
                    "config": str(best_path) if best_path else None,
                },
                "trials": rows,
                "plots": [str(p) for p in plots],
                "notes": notes + failures,
            }
        )
    else:
        if live is None:
            console.print(_table(study, spec))
        _summary(console, spec, rows, best, best_path, plots, notes)
    if failures:
        for line in failures:
            print(f"error: {line}", file=sys.stderr)
        raise typer.Exit(1)


def _workers(spec: Any, refresh: Any) -> list[str]:
    """Start ``--jobs`` worker processes sharing the study and wait for them; what went wrong
    with any of them, as lines."""
    from zoo.tasks.tune_trials import default_threads
    from zoo.train.signals import sigterm_as_interrupt

    command = [
        sys.executable,
        "-m",
        "zoo",
        "tune",
        "--config",
        str(spec.config),
        "--trials",
        str(spec.trials),
        "--jobs",
        str(spec.jobs),
        "--storage",
        spec.storage,
        "--study",
        spec.study,
        "--out",
        str(spec.out),
        "--pruner",
        spec.pruner,
        "--heartbeat",
        str(spec.heartbeat),
        "--worker",
    ]
    if spec.timeout is not None:
        command += ["--timeout", str(spec.timeout)]
    env = {**os.environ, "OMP_NUM_THREADS": str(default_threads(spec.jobs))}
    procs = [
        subprocess.Popen(
            [*command, "--sampler", _worker_sampler(spec.sampler, i)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        for i in range(spec.jobs)
    ]
    try:
        with sigterm_as_interrupt():
            while any(p.poll() is None for p in procs):
                refresh()
                time.sleep(1.0)
    except KeyboardInterrupt:
        # each worker queues its interrupted trial again and exits (Ctrl-C on a terminal
        # reaches them already; SIGTERM, from a scheduler, only reaches this process)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise ZooError("run the same command again to continue the study", exit_code=130) from None
    failures = []
    for i, p in enumerate(procs, start=1):
        if p.returncode < 0:
            failures.append(
                f"worker {i} was killed by signal {-p.returncode}; its trial is retried when "
                "its heartbeat goes stale (run the same command again if the study is not "
                "complete)"
            )
        elif p.returncode:
            failures.append(f"worker {i} exited with status {p.returncode}")
    if failures and _complete(spec):
        return []  # the other workers finished the study: the failure cost nothing
    return failures


def _worker_sampler(text: str, index: int) -> str:
    """Worker ``index``'s sampler: a seed given is offset per worker, since workers seeded
    alike would draw the same parameters."""
    from zoo.plugins.specs import format_spec, parse_spec

    spec = parse_spec(text, kind="sampler")
    seed = spec.params.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return text
    return format_spec(spec.ref, {**spec.params, "seed": seed + index})


def _complete(spec: Any) -> bool:
    """Whether the study has its trials, each finished (retries counted once)."""
    from zoo.tasks.tune_study import load_study, origin

    study = load_study(spec)
    trials = study.get_trials(deepcopy=False)
    finished = all(t.state.is_finished() for t in trials)
    return finished and len({origin(t) for t in trials}) >= spec.trials


def _shown(path: Path) -> str:
    """A path as the user would type it: relative when under the working directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "" if value is None else str(value)


def _table(study: Any, spec: Any) -> Any:
    from rich.table import Table

    from zoo.tasks.tune_results import trial_rows

    rows = trial_rows(study, spec)
    names = [d.name for d in spec.space.dimensions]
    table = Table(title=f"study {spec.study}: {len(rows)} trials", title_justify="left")
    for column in ("trial", "state", spec.metric, *names, "epochs", "seconds", "run"):
        table.add_column(column, overflow="fold", no_wrap=column not in names)
    for r in rows:
        state = r["state"]
        if r["retried_as"] is not None:
            state += f", retried as {r['retried_as']}"
        if r["retry_of"] is not None:
            state += f" (retry of {r['retry_of']})"
        run = r["run_dir"] or ""
        if run and Path(run).parent == spec.out:
            run = Path(run).name
        table.add_row(
            str(r["number"]),
            state,
            _fmt(r["value"]),
            *(_fmt(r["params"].get(n)) for n in names),
            str(r["epochs"]),
            _fmt(r["duration_seconds"]),
            run,
        )
    return table


def _summary(
    console: Any,
    spec: Any,
    rows: list[dict[str, Any]],
    best: Any,
    best_path: Path | None,
    plots: list[Path],
    notes: list[str],
) -> None:
    counts: dict[str, int] = {}
    for r in rows:
        state = "retried" if r["retried_as"] is not None else r["state"]
        counts[state] = counts.get(state, 0) + 1
    tally = ", ".join(f"{n} {state}" for state, n in counts.items())
    console.print(f"study {spec.study} in {spec.shown_storage}: {tally or 'no trials'}")
    if best is None:
        console.print("no trial has completed yet")
    else:
        params = ", ".join(
            f"{k}={_fmt(v)}" for k, v in spec.space.decode(dict(best.params)).items()
        )
        console.print(f"best: trial {best.number}, {spec.metric} {best.value:.4f} ({params})")
        if best_path is not None:
            console.print(f"best settings: {_shown(best_path)}")
    failed = [r for r in rows if r["state"] == "failed" and r["error"] and not r["retried_as"]]
    for r in failed[:5]:
        console.print(f"trial {r['number']} failed: {r['error']}")
    if len(failed) > 5:
        console.print(f"... and {len(failed) - 5} more failed trials (--json lists them all)")
    if plots:
        console.print("plots: " + ", ".join(_shown(p) for p in plots))
    for note in notes:
        console.print(f"note: {note}")
