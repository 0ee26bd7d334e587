"""Reading a file from a path a user gave (a config, a run's records, an image, weights).

Only regular files are opened: opening a FIFO for reading waits for a writer forever, so a
special file is found by ``stat`` first and refused, and the open itself is non-blocking and
checked again on the descriptor (the file may be swapped in between). What the operating system
refuses about a path (a name too long, a loop of links, not a directory) becomes one line
through ``os_error``, the one place that decides its exit code.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from typing import Any, BinaryIO

from zoo.errors import ZooError, shown

# OSErrors that say the path a user gave cannot be used: bad input (exit code 2). Any other
# one (a full disk, an I/O error, a write refused) is a failure during the command (exit 1).
PATH_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.ENXIO,
        errno.ENODEV,
    }
)


class NotRegular(OSError):
    """A path that is not a regular file (a FIFO, a socket, a device, a directory); its text is
    what it is instead."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(errno.EINVAL, reason, str(path))

    def __str__(self) -> str:
        return str(self.strerror)


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def _not_regular(mode: int) -> str | None:
    """What a file of this mode is instead of a regular file (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"{kind}, not a regular file"


def special_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a regular file (None when it is one), found without opening it:
    opening a FIFO for reading blocks until something writes to it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling symbolic link" if os.path.islink(path) else "no such file"
    except OSError as exc:
        return exc.strerror or str(exc)
    return _not_regular(mode)


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for binary reading, refused (``NotRegular``) unless it is a regular
    file: checked before opening (a FIFO would block) and on the open descriptor (O_NONBLOCK
    makes an open of a FIFO swapped in meanwhile return at once). A path that cannot be
    followed raises ``stat``'s OSError, which names the file."""
    try:
        reason = _not_regular(os.stat(path).st_mode)
    except FileNotFoundError:
        if not os.path.islink(path):
            raise
        raise FileNotFoundError(errno.ENOENT, "a dangling symbolic link", str(path)) from None
    if reason is not None:
        raise NotRegular(path, reason)

    def opener(name: str, flags: int) -> int:
        fd = os.open(name, flags | getattr(os, "O_NONBLOCK", 0))
        reason = _not_regular(os.fstat(fd).st_mode)
        if reason is not None:
            os.close(fd)
            raise NotRegular(name, reason)
        return fd

    return open(path, "rb", opener=opener)  # type: ignore[return-value]


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A regular file's bytes (``open_regular``'s errors)."""
    with open_regular(path) as f:
        return f.read()


def read_text(path: str | os.PathLike[str]) -> str:
    """A regular file's UTF-8 text (``open_regular``'s errors, UnicodeDecodeError)."""
    return read_bytes(path).decode("utf-8")


def absolute(path: str) -> str:
    """``path`` made absolute with its links followed; a loop of links is ELOOP's OSError (Python
    before 3.13 raises RuntimeError), which ``os_error`` turns into one line."""
    from pathlib import Path

    try:
        return str(Path(path).expanduser().resolve())
    except RuntimeError:
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None


def why(exc: BaseException) -> str:
    """What is wrong with a file, for a message: the system's words for an OSError, where the
    text stops being UTF-8, a parser's own message, or that it nests too deeply."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, RecursionError):
        return "nested too deeply to read"
    return shown(str(exc), quote=False)


def parse_toml(text: str) -> dict[str, Any]:
    """TOML text's tables (``tomllib``'s errors; RecursionError when nested too deeply)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(text)


def read_toml(path: str | os.PathLike[str], what: str = "config file") -> dict[str, Any]:
    """A TOML file's tables, or one line (exit code 2) saying why it cannot be used: missing,
    not a regular file, not readable, not UTF-8, not valid TOML, nested too deeply."""
    where = shown(path, quote=False)
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ZooError(f"{what} {where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"cannot read {what} {where}: {why(exc)}") from None
    try:
        return parse_toml(text)
    except (ValueError, RecursionError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ZooError(f"{what} {where} is not valid TOML: {why(exc)}") from None


def os_error(exc: OSError) -> ZooError:
    """An OSError that reached a command as one line: the file it names (cut to a readable
    length) and the system's reason; exit code 2 when the path cannot be used (``PATH_ERRNOS``),
    1 otherwise."""
    reason = exc.strerror or str(exc)
    names = [shown(n, quote=False) for n in (exc.filename, exc.filename2) if n is not None]
    message = f"{' -> '.join(names)}: {reason}" if names else reason
    return ZooError(message, exit_code=2 if exc.errno in PATH_ERRNOS else 1)
