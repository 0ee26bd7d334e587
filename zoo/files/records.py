"""A run directory's small records, read with one rule by everything that reads them (``zoo
runs``, ``zoo report``, ``zoo eval``, the model card): a file that is missing is no record (a
run killed early has none yet); a file that is there but cannot be read as what zoo writes (not
UTF-8, not valid TOML or JSON, a metrics line that is not an object, a special file) makes the
run damaged, and ``Damaged`` names the run, the file and what is wrong with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, shown
from zoo.files.reading import parse_toml, read_text, why

CONFIG, METRICS, SUMMARY, RECORD, EVAL = (
    "config.toml",
    "metrics.jsonl",
    "summary.json",
    "run.json",
    "eval.json",
)


class Damaged(ZooError):
    """A record of a run that is there but cannot be read (bad input: exit code 2)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{shown(self.path.parent, quote=False)} is damaged: {self.detail}")

    @property
    def detail(self) -> str:
        """``metrics.jsonl line 3 is not a JSON object``: the file and what is wrong."""
        return f"{self.path.name} {self.reason}"


def _text(path: Path) -> str | None:
    try:
        return read_text(path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise Damaged(path, f"cannot be read: {why(exc)}") from None


def config(run: Path) -> dict[str, Any] | None:
    """``config.toml``'s settings; None when there is none."""
    path = Path(run) / CONFIG
    text = _text(path)
    if text is None:
        return None
    try:
        return parse_toml(text)
    except (ValueError, RecursionError) as exc:
        raise Damaged(path, f"is not valid TOML: {why(exc)}") from None


def document(path: Path) -> dict[str, Any] | None:
    """A JSON object file of a run (``summary.json``, ``run.json``, ``eval.json``); None when
    there is none."""
    path = Path(path)
    text = _text(path)
    return None if text is None else _object(path, text)


def history(run: Path) -> list[dict[str, Any]]:
    """``metrics.jsonl``'s records, one per epoch; none when there is no such file."""
    path = Path(run) / METRICS
    text = _text(path)
    records: list[dict[str, Any]] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if line.strip():
            records.append(_object(path, line, f"line {number} "))
    return records


def _object(path: Path, text: str, where: str = "") -> dict[str, Any]:
    """A JSON object from (part of) a record; ``where`` in the file, for the message."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Damaged(path, f"{where}is not valid JSON: {why(exc)}") from None
    if not isinstance(data, dict):
        raise Damaged(path, f"{where}holds {_kind(data)}, not a JSON object")
    return data


def _kind(value: Any) -> str:
    """What a JSON value is, in JSON's words."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"
