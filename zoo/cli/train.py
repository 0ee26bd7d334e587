"""``zoo train``: its options are generated from ``zoo.train.config.TrainConfig``, so the CLI, the
``--config`` file and the docs cannot drift apart."""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from zoo.cli.common import command, stdout
from zoo.errors import ZooError
from zoo.train.config import FIELDS, TrainConfig

_TYPES: dict[str, Any] = {
    "str": str,
    "tuple[int, int]": str,  # an image size as typed (N or HxW), parsed by from_mapping
    "int": int,
    "float": float,
    "bool": bool,
    "list[str]": list[str],
}
STR_LIST = list[str]  # compared with ==: each list[str] expression is a new object


_METAVARS: dict[Any, str] = {str: "TEXT", int: "N", float: "X", STR_LIST: "NAME[:K=V,...]"}


def _option(name: str) -> inspect.Parameter:
    f = FIELDS[name]
    text = str(f.type)
    optional = text.endswith(" | None")
    py_type = _TYPES[text.removesuffix(" | None")]
    flag = "--" + name.replace("_", "-")
    default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore
    decls = [f"{flag}/--no-{flag[2:]}"] if py_type is bool else [flag]
    metavar = f.metadata.get("metavar") or _METAVARS.get(py_type)
    option = typer.Option(
        None if py_type == STR_LIST else default,
        *decls,
        metavar=None if py_type is bool else metavar,
        help=f.metadata["help"],
        rich_help_panel=f.metadata.get("panel"),
        show_default=default not in (None, []),
    )
    annotation = Optional[py_type] if optional or py_type == STR_LIST else py_type  # noqa: UP045
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
    )


def _train(ctx: typer.Context, config: Path | None, **values: Any) -> None:
    """Train a model. Every option can also come from --config FILE.toml (the command line
    wins); the run directory gets the weights, the resolved config and per-epoch metrics."""
    from zoo.train.allocator import keep_freed_memory
    from zoo.train.config import from_mapping, load_toml_values
    from zoo.train.progress import RichReporter
    from zoo.train.resume import resume_config
    from zoo.train.trainer import Trainer

    rank = _rank()
    given = {
        name: (values[name] or [] if FIELDS[name].type == "list[str]" else values[name])
        for name in FIELDS
        if _given(ctx, name)
    }
    try:
        overrides = {**(load_toml_values(config) if config else {}), **given}
        if overrides.get("resume"):
            cfg = resume_config(Path(overrides.pop("resume")), overrides)
        else:
            cfg = from_mapping(overrides, where=str(config) if config else "command line")
    except ZooError as exc:
        if rank:  # every process of a torchrun job reads the same command line: rank 0 says it
            raise typer.Exit(exc.exit_code) from None
        raise
    if cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_launch(cfg))
    from zoo.train.ranks import Secondary

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


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether an option was set on the command line (or its environment variable).

    Compared by name: typer vendors its own click, whose ParameterSource is another class.
    """
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _launch(cfg: TrainConfig) -> int:
    """``--nproc N``: run this training in N processes on this machine through
    torch.distributed.run (torchrun), which gives each its rank and watches them all.

    Bad input is refused here, before any process starts. Returns the exit code of the first
    process that failed (each has already printed its error), 130 when interrupted.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from zoo.device.placement import resolve_device
    from zoo.train.config import dump_toml, validate
    from zoo.train.parts import check_processes, init_weights, resolve_components
    from zoo.train.rundir import check_out, default_out
    from zoo.train.runtime import Dist

    validate(cfg)
    check_processes(cfg, cfg.nproc, resolve_device(cfg.device, Dist(0, 0, cfg.nproc, cfg.nproc)))
    parts = resolve_components(cfg)
    init_weights(cfg, parts.arch)  # a download fails here, once, and the processes find it cached
    if cfg.out is None:
        cfg = cfg.replace(out=str(default_out(parts.arch.spec.name)))
    if cfg.resume is None:
        check_out(Path(cfg.out), cfg.overwrite)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(dump_toml(cfg.to_dict()))
        args = ["--standalone", f"--nproc-per-node={cfg.nproc}", "-m", "zoo", "train"]
        # torchrun would give each process one thread; share this machine's cores instead.
        preset = "OMP_NUM_THREADS" in os.environ
        os.environ.setdefault("OMP_NUM_THREADS", str(_threads(cfg.nproc)))
        try:
            run(parse_args([*args, "--config", str(config)]))
        except ChildFailedError as exc:
            code = exc.get_first_failure()[1].exitcode
            return 128 - code if code < 0 else code  # killed by a signal: 128 + its number
        except SignalException:
            return 130
        finally:
            if not preset:
                os.environ.pop("OMP_NUM_THREADS", None)
    return 0


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
        *(_option(name) for name in FIELDS),
    ]

    @command
    def train(ctx: typer.Context, config: Path | None = None, **values: Any) -> None:
        _train(ctx, config, **values)

    train.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    train.__annotations__ = {p.name: p.annotation for p in params}
    train.__doc__ = _train.__doc__
    app.command("train")(train)
