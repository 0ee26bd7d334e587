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
from typer.core import TyperGroup

from zoo.errors import SHOWN as SHOWN_QUOTED
from zoo.errors import ZooError, shown

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
    that cannot be written (``> /dev/full``, a closed pipe) is one error line, exit code 1. An
    OSError no code turned into a message (a path too long, a loop of links) is one line too,
    naming the file (``zoo.files.reading.os_error`` gives its exit code)."""

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
                try:
                    result = func(*args, **kwargs)
                    sys.stdout.flush()  # now, not at exit, where a failure could not be reported
                    return result
                except OSError as exc:  # a path the system refused (too long, a loop, ...)
                    from zoo.files.reading import os_error

                    raise os_error(exc) from None
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


class ZooGroup(TyperGroup):
    """The ``zoo`` group: what click itself reports follows zoo's error contract too. A usage
    error (an unknown option, a value of the wrong type, a missing argument) is one ``error:``
    line, with click's closest names, and exit code 2; help that cannot be written
    (``zoo --help > /dev/full``) is one line and exit code 1; ``zoo`` alone prints the help, as
    ``zoo --help`` does."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        exceptions = _click_exceptions()
        code: Any = 0
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
            code = result if isinstance(result, int) else 0  # typer.Exit's code, else success
        except exceptions.NoArgsIsHelpError as exc:
            try:
                sys.stdout.write(exc.ctx.get_help() + "\n")
                sys.stdout.flush()
            except OSError as error:
                code = _failed_output(error)
        except exceptions.ClickException as exc:
            print(f"error: {usage_line(exc)}", file=sys.stderr)
            code = exc.exit_code
        except typer.Abort:
            print("interrupted", file=sys.stderr)
            code = 130
        except OSError as exc:  # click's own output: the help, when stdout cannot be written
            code = _failed_output(exc)
        sys.exit(code)


def _failed_output(exc: OSError) -> int:
    print(f"error: {StdoutError(exc)}", file=sys.stderr)
    _drop_stdout(sys.stdout)
    return 1


def _click_exceptions() -> Any:
    """click's exceptions module: typer's own copy of click (typer >= 0.2x), else click's."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - typer versions that use the click package
        from click import exceptions
    return exceptions


def usage_line(exc: Any) -> str:
    """click's error as one line: its message (quoted values cut to a readable length), the
    closest names it suggests, and where the help is."""
    import re

    exceptions = _click_exceptions()
    if isinstance(exc, exceptions.NoSuchOption):
        message = f"no such option {shown(exc.option_name, quote=False)}"
        if exc.possibilities:
            message += f"; did you mean {', '.join(sorted(exc.possibilities))}?"
    else:
        message = " ".join(exc.format_message().split()).rstrip(".")
        message = re.sub(f"'([^']{{{SHOWN_QUOTED + 1},}})'", lambda m: shown(m[1]), message)
        message = message[:1].lower() + message[1:].replace(". Did you mean", "; did you mean")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message += f" (see {ctx.command_path} {ctx.help_option_names[0]})"
    return message


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
