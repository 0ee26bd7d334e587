"""The options commands share, declared once: the settings of ``zoo train`` as options (from
``TrainConfig``'s fields: their help, metavar and minimum), the hardware options other commands
take with the same words and limits (``--device``, ``--precision``, ``--workers``), the
test-time augmentation pair (``--tta``, ``--tta-mode``), and the layering of a ``--config`` file
under the options given on the command line that ``zoo train`` and ``zoo lr-find`` both do."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import typer

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


def setting(name: str) -> inspect.Parameter:
    """A ``TrainConfig`` field as a keyword parameter with its typer option (``--name``, a
    ``--no-name`` twin for booleans, the field's help, metavar, panel and minimum)."""
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
        min=f.metadata.get("min"),
    )
    annotation = Optional[py_type] if optional or py_type == STR_LIST else py_type  # noqa: UP045
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
    )


def device() -> Any:
    """``--device``, in the words of ``zoo train``'s."""
    return typer.Option(
        "auto", "--device", metavar=FIELDS["device"].metadata["metavar"], help=_help("device")
    )


def precision(auto: str) -> Any:
    """``--precision``; ``auto`` says what it means for the command."""
    return typer.Option(
        "auto",
        "--precision",
        metavar=FIELDS["precision"].metadata["metavar"],
        help=f"auto ({auto}) | fp32 | bf16 | fp16.",
    )


def workers() -> Any:
    """``--workers``, with ``zoo train``'s help and minimum."""
    return typer.Option(
        None, "--workers", min=FIELDS["workers"].metadata["min"], metavar="N", help=_help("workers")
    )


def engine() -> Any:
    """``--engine`` of the commands that run a trained model (zoo.models.engines)."""
    return typer.Option(
        "auto",
        "--engine",
        metavar="ENGINE",
        help="auto (the fastest measured on this CPU, cached beside the weights) | eager | "
        "torchscript | onnxruntime.",
    )


def tta(help: str) -> Any:
    return typer.Option(False, "--tta", help=help)


def tta_mode(help: str = "flip (default), crops or flip+crops; implies --tta.") -> Any:
    return typer.Option(None, "--tta-mode", metavar="MODE", help=help)


def _help(name: str) -> str:
    return str(FIELDS[name].metadata["help"])


def given(ctx: typer.Context, name: str) -> bool:
    """Whether an option was set on the command line (or its environment variable).

    Compared by name: typer vendors its own click, whose ParameterSource is another class.
    """
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def layered(
    ctx: typer.Context, config: Path | None, values: dict[str, Any], names: Iterable[str]
) -> dict[str, Any]:
    """The settings of a run as given: a ``--config`` file's (checked), under the options of
    ``names`` given on the command line (the command line wins); ``TrainConfig``'s defaults for
    the rest come with ``from_mapping``."""
    from zoo.train.config import load_toml_values

    on_the_line = {
        name: (values[name] or [] if FIELDS[name].type == "list[str]" else values[name])
        for name in names
        if given(ctx, name)
    }
    return {**(load_toml_values(config) if config else {}), **on_the_line}


def train_config(overrides: dict[str, Any], config: Path | None) -> TrainConfig:
    """``layered`` settings as a checked ``TrainConfig``, errors naming where they came from."""
    from zoo.train.config import from_mapping

    return from_mapping(overrides, where=str(config) if config else "command line")
