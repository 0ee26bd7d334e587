"""The one exception type the CLI turns into a one-line error and a non-zero exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not found:
        lowered = name.lower()
        found = [c for c in choices if lowered in c or c in lowered][:n]
    return found


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``"; did you mean a, b?"`` suffix, or an empty string when nothing is close."""
    found = closest(name, choices)
    return f"; did you mean {', '.join(found)}?" if found else ""
