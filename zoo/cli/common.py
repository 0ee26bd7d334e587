"""What every command shares: consoles, one-line errors, warnings as one line."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from zoo.errors import ZooError

F = TypeVar("F", bound=Callable[..., Any])


def stdout() -> Any:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # piped: rich would assume 80 columns and fold every table
        console = Console(highlight=False, soft_wrap=True, width=200)
    return console


def stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _show_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    print(f"warning: {message}", file=sys.stderr)


def command(func: F) -> F:
    """Run a command with zoo's error contract: a ZooError becomes ``error: ...`` on stderr and
    its exit code (2 for bad input); warnings print as one line; no tracebacks for users."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            try:
                return func(*args, **kwargs)
            except ZooError as exc:
                prefix = "interrupted" if exc.exit_code == 130 else "error"
                print(f"{prefix}: {exc}", file=sys.stderr)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
