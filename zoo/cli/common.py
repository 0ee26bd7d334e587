"""What every command shares: consoles, one-line errors, warnings as one line."""

from __future__ import annotations

import functools
import json
import os
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


class StdoutError(ZooError):
    """Standard output cannot be written (a full disk, a closed pipe): the command failed."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(
            f"cannot write the output: {exc.strerror or exc} (standard output)", exit_code=1
        )


class _GuardedStdout:
    """``sys.stdout`` for the length of a command, turning a failed write or flush into a
    StdoutError: every command's output goes through it (print, rich, csv), so none of them
    needs its own handling of ``> /dev/full`` or ``| head``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise StdoutError(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise StdoutError(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _drop_stdout(stream: Any) -> None:
    """After a failed write, point stdout at /dev/null: what is still buffered would fail
    again when Python flushes it at exit, with a traceback-like message and exit code 120."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, AttributeError, ValueError):
        pass  # not a real file (tests capture output in memory)


def command(func: F) -> F:
    """Run a command with zoo's error contract: a ZooError becomes ``error: ...`` on stderr and
    its exit code (2 for bad input); warnings print as one line; no tracebacks for users. Output
    that cannot be written (``> /dev/full``, a closed pipe) is one error line, exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            # PIL's decompression-bomb warning names no file; zoo's own decoder warns with it.
            warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
            real = sys.stdout
            sys.stdout = _GuardedStdout(real)
            try:
                result = func(*args, **kwargs)
                sys.stdout.flush()  # now, not at exit, where a failure could not be reported
                return result
            except ZooError as exc:
                if isinstance(exc, StdoutError):
                    _drop_stdout(real)
                prefix = "interrupted" if exc.exit_code == 130 else "error"
                print(f"{prefix}: {exc}", file=sys.stderr)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                raise typer.Exit(130) from None
            finally:
                sys.stdout = real
                try:  # a command that failed otherwise: its output must not fail again at exit
                    real.flush()
                except (OSError, ValueError):
                    _drop_stdout(real)

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
