"""The one exception type the CLI turns into a one-line error and a non-zero exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from os import PathLike

# Characters of a value that a message echoes: a 10 MB config value stays one readable line.
SHOWN = 200
_ELLIPSIS = "\u2026"


def shown(value: object, *, quote: bool = True, limit: int = SHOWN) -> str:
    """A value as a message echoes it: ``repr`` (``str`` with ``quote=False``, for paths), cut
    to ``limit`` characters with an ellipsis and the full length. Every message that repeats
    what a user gave goes through here, so none repeats a huge value in full."""
    if not quote and isinstance(value, (str, PathLike)):
        text = str(value)
    elif isinstance(value, str) and len(value) > limit:  # cut before repr: no 10 MB copy
        return f"{value[:limit] + _ELLIPSIS!r} ({len(value):,} characters)"
    else:
        text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}{_ELLIPSIS} ({len(text):,} characters)"


class ZooError(Exception):
    """A user-facing error: bad input, unknown names, unusable files.

    ``exit_code`` follows the CLI convention: 2 for bad input, 1 for failures during a run.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The valid names closest to ``name``, best first (for "did you mean" hints)."""
    choices = list(choices)
    if len(name) > SHOWN:  # no valid name is that long; comparing would take seconds
        return []
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not found:
        lowered = name.lower()
        found = [c for c in choices if lowered in c or c in lowered][:n]
    return found


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``"; did you mean a, b?"`` suffix, or an empty string when nothing is close."""
    found = closest(name, choices)
    return f"; did you mean {', '.join(found)}?" if found else ""
