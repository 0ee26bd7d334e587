"""``zoo lr-find``: the learning-rate range test (``zoo.train.lrfind``), with the component
options of ``zoo train`` (generated from ``TrainConfig`` as that command's are)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from zoo.cli import options
from zoo.cli.common import command, print_json, stdout
from zoo.train.progress import Reporter

# The settings of zoo train that shape the sweep (not the rate, schedule, length or outputs).
OPTIONS = (
    "arch",
    "data",
    "aug",
    "loss",
    "optimizer",
    "init",
    "pretrained",
    "batch_size",
    "weight_decay",
    "layer_decay",
    "freeze_epochs",
    "image_size",
    "val_split",
    "clip_grad",
    "class_weights",
    "balanced",
    "seed",
    "device",
    "precision",
    "channels_last",
    "workers",
    "download",
)


def _lr_find(
    ctx: typer.Context,
    config: Path | None,
    steps: int,
    start_lr: float,
    end_lr: float,
    out: Path,
    plot: bool,
    json_output: bool,
    **values: Any,
) -> None:
    """Find a learning rate: train a throwaway copy of the model for up to --steps batches
    while the rate grows exponentially, stop when the loss diverges, and suggest a tenth of
    the rate at which the loss was lowest. Takes the component options of zoo train (and
    --config FILE.toml); writes the loss curve to lr_find.png. Nothing else is written."""
    from zoo.train.lrfind import lr_find

    cfg = options.train_config(options.layered(ctx, config, values, OPTIONS), config)
    out = _plot_target(out) if plot else out
    found = lr_find(cfg, steps=steps, start_lr=start_lr, end_lr=end_lr, reporter=_Notes())
    notes = [found.warning] if found.warning else []
    if plot:
        notes += _plot(found, out)
    if json_output:
        print_json(found.to_json())
        for line in notes:
            print(line, file=sys.stderr)
        return
    console = stdout()
    how = f"{len(found.lrs)} of {steps} steps" + (
        f", stopped: the loss {'diverged' if found.stopped == 'diverged' else 'became NaN'}"
        if found.stopped
        else ""
    )
    if found.suggested_lr is None:
        console.print(f"no suggestion: too few steps before the loss diverged ({how})")
    else:
        console.print(f"suggested learning rate: {found.suggested_lr:.2e} ({how})")
    for line in notes:
        console.print(line)


def _plot(found: Any, out: Path) -> list[str]:
    from zoo.files.atomic import write_output
    from zoo.tasks import plots

    if not plots.available():
        return ["note: matplotlib is not installed, so no plot: pip install 'zoo[plots]'"]
    if not found.lrs:
        return []
    write_output(out, plots.lr_find_png(found.lrs, found.losses, found.suggested_lr), "--out")
    return [f"wrote {out}"]


def _plot_target(out: Path) -> Path:
    """Where the plot goes (``--out DIR``: ``DIR/lr_find.png``), refused before the sweep when
    a file is there that zoo did not draw: a user's file is never replaced."""
    from zoo.errors import ZooError
    from zoo.tasks.plots import drawn_by_zoo

    if out.is_dir():
        out = out / "lr_find.png"
    if (out.exists() or out.is_symlink()) and (out.is_symlink() or not drawn_by_zoo(out)):
        raise ZooError(f"{out} exists and zoo did not draw it; choose another file with --out")
    return out


class _Notes(Reporter):
    """The set-up's notes (weights loaded, normalization) on stderr, one line each."""

    def note(self, text: str) -> None:
        print(text, file=sys.stderr)


def register(app: typer.Typer) -> None:
    P = inspect.Parameter
    own = [
        P(
            "config",
            P.KEYWORD_ONLY,
            default=typer.Option(
                None, "--config", metavar="FILE", help="TOML file of settings, as zoo train's."
            ),
            annotation=Optional[Path],  # noqa: UP045 - a runtime object for typer
        ),
        P(
            "steps",
            P.KEYWORD_ONLY,
            default=typer.Option(100, "--steps", min=5, metavar="N", help="Batches at most."),
            annotation=int,
        ),
        P(
            "start_lr",
            P.KEYWORD_ONLY,
            default=typer.Option(1e-7, "--start-lr", metavar="X", help="The first rate."),
            annotation=float,
        ),
        P(
            "end_lr",
            P.KEYWORD_ONLY,
            default=typer.Option(10.0, "--end-lr", metavar="X", help="The last rate."),
            annotation=float,
        ),
        P(
            "out",
            P.KEYWORD_ONLY,
            default=typer.Option(
                Path("lr_find.png"), "--out", metavar="FILE", help="Where the plot goes."
            ),
            annotation=Path,
        ),
        P(
            "plot",
            P.KEYWORD_ONLY,
            default=typer.Option(True, "--plot/--no-plot", help="Write the plot."),
            annotation=bool,
        ),
        P(
            "json_output",
            P.KEYWORD_ONLY,
            default=typer.Option(False, "--json", help="Print the sweep as JSON."),
            annotation=bool,
        ),
    ]
    params = [
        P("ctx", P.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *own,
        *(options.setting(name) for name in OPTIONS),
    ]

    @command
    def lr_find(ctx: typer.Context, **values: Any) -> None:
        _lr_find(ctx, **values)

    lr_find.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    lr_find.__annotations__ = {p.name: p.annotation for p in params}
    lr_find.__doc__ = _lr_find.__doc__
    app.command("lr-find")(lr_find)
