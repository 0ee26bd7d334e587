"""``zoo train``: its options are generated from ``zoo.train.config.TrainConfig``, so the CLI, the
``--config`` file and the docs cannot drift apart."""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from zoo.cli import options
from zoo.cli.common import command, stdout
from zoo.errors import ZooError
from zoo.train.config import FIELDS, TrainConfig


def _train(ctx: typer.Context, config: Path | None, **values: Any) -> None:
    """Train a model. Every option can also come from --config FILE.toml (the command line
    wins); the run directory gets the weights, the resolved config and per-epoch metrics."""
    rank = _rank()
    try:
        overrides = options.layered(ctx, config, values, FIELDS)
        if overrides.get("resume"):
            from zoo.train.resume import resume_config

            cfg = resume_config(Path(overrides.pop("resume")), overrides)
        else:
            cfg = options.train_config(overrides, config)
    except ZooError as exc:
        if rank:  # every process of a torchrun job reads the same command line: rank 0 says it
            raise typer.Exit(exc.exit_code) from None
        raise
    if cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_launch(cfg))
    from zoo.train.allocator import keep_freed_memory
    from zoo.train.progress import RichReporter
    from zoo.train.ranks import Secondary
    from zoo.train.trainer import Trainer

    keep_freed_memory()
    try:
        Trainer(cfg, RichReporter(stdout())).fit()
    except Secondary as exc:  # rank 0 reports it for the whole run
        raise typer.Exit(exc.exit_code) from None
    except ZooError as exc:
        if rank:
            raise ZooError(f"process {rank}: {exc}", exit_code=exc.exit_code) from None
        raise


def _rank() -> int:
    """This process's rank under torchrun (0 alone, or when RANK is unreadable)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _launch(cfg: TrainConfig) -> int:
    """``--nproc N``: run this training in N processes on this machine through
    torch.distributed.run (torchrun), which gives each its rank and watches them all
    (``zoo.train.launch``).

    Bad input is refused here, before any process starts. Returns the exit code of the first
    process that failed (each has said why), 130 when interrupted; a process killed by a
    signal is one error line (exit code 1) naming it.
    """
    from zoo.data.source import check_processes as data_processes
    from zoo.device.placement import resolve_device
    from zoo.train.config import dump_toml, validate
    from zoo.train.launch import run_processes
    from zoo.train.parts import check_processes, init_weights, resolve_components
    from zoo.train.rundir import check_out, default_out
    from zoo.train.runtime import Dist

    validate(cfg)
    check_processes(cfg, cfg.nproc, resolve_device(cfg.device, Dist(0, 0, cfg.nproc, cfg.nproc)))
    parts = resolve_components(cfg)
    data_processes(parts.dataset, cfg.nproc)  # a stream's shards must feed every process
    init_weights(cfg, parts.arch)  # a download fails here, once, and the processes find it cached
    if cfg.out is None:
        cfg = cfg.replace(out=str(default_out(parts.arch.spec.name)))
    if cfg.resume is None:
        check_out(Path(cfg.out), cfg.overwrite)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(dump_toml(cfg.to_dict()))
        out = Path(cfg.resume or cfg.out)  # type: ignore[arg-type]
        return run_processes(config, cfg.nproc, out, _threads(cfg.nproc))


def _threads(nproc: int) -> int:
    """CPU threads per process: the cores this process may use, shared out."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // nproc)


def register(app: typer.Typer) -> None:
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                "--config",
                metavar="FILE",
                help="TOML file of settings (keys as the options, e.g. batch_size = 64).",
                rich_help_panel="Output",
            ),
            annotation=Optional[Path],  # noqa: UP045 - a runtime object for typer
        ),
        *(options.setting(name) for name in FIELDS),
    ]

    @command
    def train(ctx: typer.Context, config: Path | None = None, **values: Any) -> None:
        _train(ctx, config, **values)

    train.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    train.__annotations__ = {p.name: p.annotation for p in params}
    train.__doc__ = _train.__doc__
    app.command("train")(train)
