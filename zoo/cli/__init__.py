"""The ``zoo`` command line. ``build_app()`` makes a fresh typer app (tests build their own);
command modules import torch only inside the commands that need it."""

from __future__ import annotations

import typer


def build_app() -> typer.Typer:
    """The typer app with every command registered."""
    from zoo.cli import (
        benchmark,
        evaluate,
        export,
        listing,
        lrfind,
        newplugin,
        predict,
        push,
        report,
        runs,
        train,
        tune,
    )

    app = typer.Typer(
        name="zoo",
        help="Train, evaluate and share image classifiers built from plugins.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain click help: typer's rich help costs 0.25 s at start-up
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    listing.register(app)
    train.register(app)
    tune.register(app)
    lrfind.register(app)
    evaluate.register(app)
    predict.register(app)
    report.register(app)
    export.register(app)
    push.register(app)
    newplugin.register(app)
    benchmark.register(app)
    runs.register(app)
    return app


def main() -> None:
    """Console-script entry point."""
    build_app()(prog_name="zoo")
