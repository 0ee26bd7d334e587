"""The ``zoo`` command line. ``build_app()`` makes a fresh typer app (tests build their own);
command modules import torch only inside the commands that need it."""

from __future__ import annotations

import sys

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
        probe,
        push,
        report,
        runs,
        serve,
        shard,
        train,
        tune,
    )
    from zoo.cli.common import ZooGroup

    app = typer.Typer(
        cls=ZooGroup,
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
    probe.register(app)
    evaluate.register(app)
    predict.register(app)
    report.register(app)
    export.register(app)
    push.register(app)
    newplugin.register(app)
    benchmark.register(app)
    runs.register(app)
    shard.register(app)
    serve.register(app)
    return app


def main() -> None:
    """Console-script entry point."""
    try:
        build_app()(prog_name="zoo")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if "torch" in sys.modules:
        quick_exit(code)
    raise SystemExit(code)


def quick_exit(code: int | str | None) -> None:
    """End a process that imported torch without Python's teardown.

    After Python's own shutdown, the destructors of torch's shared libraries (the CUDA ones
    even on a machine without a GPU) fault in about 110 MiB of library pages and take about
    0.4 s of CPU: a quarter of ``import torch``'s cost, paid by every command, and a peak
    memory above the one a run reports (docs/performance.md). This does what Python's exit does
    for the program (waits for its threads, runs the atexit handlers, which stop DataLoader
    workers and remove temporary files, flushes the standard streams), then ends the process.
    """
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else int(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (zoo predict ... | head)
            status = status or 120
    os._exit(status)
