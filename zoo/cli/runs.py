"""``zoo runs``: every run directory at a glance, and ``zoo runs compare`` to set a few side
by side (their curves in one PNG, the settings that differ in a table).

Reads only the runs' small files (``zoo.tasks.runs``): no torch, fast on hundreds of runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from zoo.cli.common import command, print_json, stdout

DEFAULT_ROOT = Path("runs")


class ListByDefault(TyperGroup):
    """``zoo runs [DIR ...]`` lists: arguments that do not start with a subcommand's name go
    to ``zoo runs list`` (a folder named ``compare`` is listed with ``zoo runs list compare``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    runs = typer.Typer(
        cls=ListByDefault,
        help="List training runs (`zoo runs [DIR ...]` is `zoo runs list`) and compare them.",
        no_args_is_help=False,
        rich_markup_mode=None,
    )
    runs.command("list")(list_runs)
    runs.command("compare")(compare)
    app.add_typer(runs, name="runs")


@command
def list_runs(
    dirs: Annotated[
        list[str] | None,
        typer.Argument(metavar="DIR", help="Folders searched for runs (default: runs/)."),
    ] = None,
    sort: str | None = typer.Option(
        None,
        "--sort",
        metavar="METRIC",
        help="Order by each run's best value of a metric (best first: lowest for losses), or "
        "by name, started (the default), status, epochs or images_per_second.",
    ),
    filter: str | None = typer.Option(
        None, "--filter", "-f", metavar="GLOB", help="Only runs whose name matches, e.g. 'resnet*'."
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON (one object per run)."),
) -> None:
    """One row per run: architecture, data, epochs done of planned, best monitored metric and
    its epoch, status (complete, stopped early, failed, running, interrupted), images/s and
    when it started."""
    from zoo.errors import shown
    from zoo.tasks import runs as reading

    roots = [Path(d) for d in dirs or []]
    found: list[reading.RunInfo] = []
    damaged: list[Any] = []
    if roots or DEFAULT_ROOT.is_dir():
        found, damaged = reading.collect(roots or [DEFAULT_ROOT], filter, sort)
    where = ", ".join(str(d) for d in roots) if roots else f"{DEFAULT_ROOT}/"
    _skip(damaged, left=len(found), needed=1, error=f"every run in {where} is damaged")
    by_metric = sort is not None and sort not in reading.COLUMNS
    if json:
        rows = []
        for run in found:
            row = run.to_json()
            row["sorted_by"] = run.best_of(sort) if by_metric else None  # type: ignore[arg-type]
            rows.append(row)
        print_json(rows)
        return
    console = stdout()
    if not found:
        console.print(f"no runs in {where}" + (f" matching {shown(filter)}" if filter else ""))
        return
    from zoo.cli.table import cell, render

    headers = ["run", "arch", "data", "epochs", "best", "status", "img/s", "started"]
    if by_metric:
        headers.insert(5, f"best {sort}")
    rows = []
    for run in found:
        row = [
            run.name,
            _short(run.config.get("arch")),
            _short(run.config.get("data")),
            f"{run.epochs_done}/{run.epochs_planned if run.epochs_planned is not None else '?'}",
            _best(run.best),
            cell((run.status, _STYLES.get(run.status, ""))),
            f"{run.images_per_second:,.0f}" if run.images_per_second is not None else "-",
            _when(run.started),
        ]
        if by_metric:
            row.insert(5, _best(run.best_of(sort), name=False))  # type: ignore[arg-type]
        rows.append(row)
    console.print(render(headers, rows, console.width), end="")
    counts = {s: sum(r.status == s for r in found) for s in reading.STATUSES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if damaged:
        summary += f"; {len(damaged)} damaged, left out"
    console.print(f"{len(found)} {'run' if len(found) == 1 else 'runs'} in {where}: {summary}")


@command
def compare(
    runs: Annotated[
        list[str],
        typer.Argument(metavar="RUN", help="Two or more run directories (or names in runs/)."),
    ],
    metric: str = typer.Option(
        "val_accuracy", "--metric", "-m", metavar="METRIC", help="The metric drawn per epoch."
    ),
    out: str = typer.Option(
        "compare.png", "--out", "-o", metavar="FILE.png", help="Where the PNG goes."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """Overlay the runs' curves of one metric in a PNG, and show the settings that differ."""
    from zoo.errors import ZooError, did_you_mean
    from zoo.files import records
    from zoo.files.atomic import write_output
    from zoo.tasks import plots
    from zoo.tasks import runs as reading

    target = Path(out)
    if len(runs) < 2:
        raise ZooError("zoo runs compare needs at least two runs")
    infos, damaged = [], []
    for text in runs:
        try:
            infos.append(reading.read(_run_dir(text)))
        except records.Damaged as exc:
            damaged.append(exc)
    _skip(damaged, left=len(infos), needed=2, error="fewer than two of the runs are readable")
    names = [i.name for i in infos]
    if len(set(names)) < len(names):  # same folder name in different places: show paths
        for info in infos:
            info.name = str(info.path)
    having = [i for i in infos if i.best_of(metric) is not None]
    if not having:
        metrics = sorted({m for i in infos for m in i.metrics()})
        raise ZooError(
            f"--metric {metric}: none of these runs recorded it{did_you_mean(metric, metrics)} "
            f"(they have {', '.join(metrics) or 'no metrics yet'})"
        )
    if target.exists() and not overwrite:
        raise ZooError(f"{target} exists; add --overwrite to replace it")
    if not plots.available():
        raise ZooError("zoo runs compare draws with matplotlib: pip install 'zoo[plots]'")
    write_output(target, plots.compare_png(infos, metric), "--out")
    differ = reading.differences(infos)
    missing = [i.name for i in infos if i not in having]
    if json:
        print_json(
            {
                "metric": metric,
                "runs": [{**i.to_json(), "metric_best": i.best_of(metric)} for i in infos],
                "differences": differ,
                "png": str(out),
            }
        )
        return
    from zoo.cli.table import render

    console = stdout()
    rows: list[list[Any]] = [
        ["status", *(i.status for i in infos)],
        ["epochs done", *(f"{i.epochs_done}/{i.epochs_planned}" for i in infos)],
        [f"best {metric}", *(_best(i.best_of(metric), name=False) for i in infos)],
    ]
    rows += [[key, *(_value(v) for v in values)] for key, values in differ.items()]
    console.print(render(["", *(i.name for i in infos)], rows, console.width), end="")
    if not differ:
        console.print("the runs have the same settings")
    for name in missing:
        console.print(f"note: {name} has no {metric}")
    console.print(f"wrote {out}")


_STYLES = {"complete": "green", "stopped early": "green", "failed": "red", "running": "cyan"}


def _run_dir(text: str) -> Path:
    """A run directory given by path, or by its name in runs/."""
    from zoo.errors import ZooError, did_you_mean
    from zoo.tasks import runs as reading

    for path in (Path(text), DEFAULT_ROOT / text):
        if reading.is_run(path):
            return path
    known = [r.name for _, r in reading.find([DEFAULT_ROOT])] if DEFAULT_ROOT.is_dir() else []
    raise ZooError(f"{text} is not a zoo run directory{did_you_mean(text, known)}")


def _skip(damaged: list[Any], *, left: int, needed: int, error: str) -> None:
    """Name each damaged run in a warning and go on with the ``left`` readable ones; with
    fewer than ``needed`` left, fail instead (exit code 2): with the one damaged run's own line,
    or ``error`` after the warnings."""
    from zoo.errors import ZooError

    if not damaged:
        return
    if left < needed and len(damaged) == 1:
        raise damaged[0]
    for exc in damaged:
        print(f"warning: {exc}; it is left out", file=sys.stderr)
    if left < needed:
        raise ZooError(error)


def _short(value: Any) -> str:
    """A setting for a narrow column: a folder's name instead of its absolute path."""
    if value is None:
        return "-"
    text = str(value)
    return Path(text).name if os.path.isabs(text) else text


def _best(best: dict[str, Any] | None, *, name: bool = True) -> str:
    if not best or best.get("value") is None:
        return "-"
    shown = f"{best['value']:.4f} (epoch {best['epoch']})"
    return f"{best['metric']} {shown}" if name else shown


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "[]"
    return str(value)


def _when(started: str | None) -> str:
    """``2026-11-21 10:15`` from ISO 8601."""
    return started[:16].replace("T", " ") if started else "-"
