"""What a probe leaves in its folder and says at the end.

OUT/probe.json  the settings and every candidate's row, rewritten after each candidate (what
                ``--resume`` reads), then the ranking, the best and its ``zoo train`` command
OUT/probe.csv   one line per candidate, in rank order
OUT/probe.png   accuracy (mAP for multi-label data) against images per second, the Pareto front
                marked (needs matplotlib)

The ``zoo train`` command and ``--train`` come from one set of values (``train_values``), so the
command shown is the run ``--train`` starts (which trains multi-label data as multi-label by
itself: ``zoo train`` takes the task from the data).
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    from zoo.probing.runner import ProbeResult
    from zoo.probing.settings import ProbeSettings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RECORD = "probe.json"
TABLE = "probe.csv"
PLOT = "probe.png"
COLUMNS = (
    "rank",
    "name",
    "status",
    "accuracy",
    "f1",
    "knn_accuracy",
    "map",
    "f1_micro",
    "knn_map",
    "images_per_second",
    "params",
    "gmacs",
    "image_size",
    "features",
    "C",
    "train_images",
    "val_images",
    "cached",
    "seconds",
    "task",
    "hub",
    "reason",
)


def train_values(settings: ProbeSettings, best: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``zoo train`` that fine-tune the best candidate: its weights, the size
    it was probed at, and the probe's split (seed and validation fraction) when not the
    defaults, so that training holds out the same images."""
    from zoo.train.config import FIELDS, format_image_size

    values: dict[str, Any] = {
        "data": settings.data,
        "arch": _arch_name(best),
        "pretrained": True,
        "image_size": format_image_size(tuple(best["image_size"])),
    }
    for name in ("seed", "val_split"):
        if getattr(settings, name) != FIELDS[name].default:
            values[name] = getattr(settings, name)
    return values


def train_command(values: dict[str, Any]) -> str:
    """``zoo train --data ... --arch ... --pretrained ...`` for ``train_values``."""
    args = ["zoo", "train"]
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return shlex.join(args)


def _arch_name(row: dict[str, Any]) -> str:
    """``NAME.TAG``, or ``plugin:NAME.TAG`` when the bare name is another plugin's."""
    from zoo.plugins.build import get_registry

    try:
        if get_registry().find_pretrained(row["name"]).qualified == row["qualified"]:
            return str(row["name"])
    except ZooError:
        pass
    return str(row["qualified"])


def report(result: ProbeResult, out: Path | None) -> dict[str, Any]:
    """The probe as JSON (what ``--json`` prints and ``probe.json`` holds at the end)."""
    from zoo import __version__

    best = result.best
    values = train_values(result.settings, best) if best is not None else None
    return {
        "zoo_version": __version__,
        "finished": True,
        "out": None if out is None else str(out),
        "settings": result.settings.to_json(),
        "candidates": result.rows,
        "left_out": result.left_out,
        "best": None if best is None else best["name"],
        "train": values,
        "train_command": None if values is None else train_command(values),
    }


class Record:
    """Writes ``probe.json`` after every candidate, atomically (``record(rows)``); the
    finished probe's report replaces it (``write``)."""

    def __init__(self, out: Path, settings: ProbeSettings) -> None:
        self.path = out / RECORD
        self.settings = settings

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        from zoo import __version__

        data = {
            "zoo_version": __version__,
            "finished": False,
            "settings": self.settings.to_json(),
            "candidates": rows,
        }
        _write(self.path, json.dumps(data, indent=2).encode())


def read_record(folder: Path) -> tuple[ProbeSettings, list[dict[str, Any]]]:
    """The settings and rows of the probe in ``folder`` (for ``--resume``)."""
    from zoo.probing.settings import ProbeSettings

    path = folder / RECORD
    if not path.is_file():
        raise ZooError(f"--resume {folder}: no {RECORD} there; it is not a zoo probe folder")
    try:
        data = json.loads(path.read_text())
        settings = ProbeSettings.from_json(data["settings"])
        rows = [r for r in data.get("candidates", []) if isinstance(r, dict) and "status" in r]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"--resume {folder}: cannot read {RECORD} ({exc})") from None
    return settings, rows


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        cells = []
        for column in COLUMNS:
            value = row.get(column)
            if column == "image_size" and value:
                value = "x".join(map(str, value))
            cells.append("" if value is None else value)
        writer.writerow(cells)
    return buffer.getvalue()


def write(result: ProbeResult, out: Path) -> tuple[list[Path], list[str]]:
    """``probe.json`` (final), ``probe.csv`` and ``probe.png``: the files written, and notes
    (matplotlib missing)."""
    written, notes = [], []
    data = report(result, out)
    _write(out / RECORD, json.dumps(data, indent=2).encode())
    written.append(out / RECORD)
    _write(out / TABLE, csv_text(result.rows).encode())
    written.append(out / TABLE)
    picture = plot(result.rows)
    if picture is not None:
        _write(out / PLOT, picture)
        written.append(out / PLOT)
    else:
        notes.append("note: matplotlib is not installed, so no probe.png: pip install 'zoo[plots]'")
    return written, notes


# Row fields that change from one probe of the same candidates to the next but are not drawn.
UNDRAWN = ("seconds", "cached", "resumed")


def plot(rows: list[dict[str, Any]]) -> bytes | None:
    """``probe.png`` of ``rows`` (None without matplotlib): the picture drawn of the same
    values before when the feature cache holds it (a PNG is a function of the values drawn, the
    drawing code and matplotlib's version, and drawing it takes longer than the rest of a probe
    whose candidates are all cached), else drawn now and kept there."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    from zoo.probing import cache
    from zoo.tasks import plots

    try:
        code = hashlib.sha256(Path(plots.__file__).read_bytes()).hexdigest()
        made = [version("matplotlib"), code]
    except (PackageNotFoundError, OSError):
        made = None
    drawn = [{k: v for k, v in r.items() if k not in UNDRAWN} for r in rows]
    text = json.dumps([made, drawn], sort_keys=True, default=str)
    name = f"plot-{hashlib.sha256(text.encode()).hexdigest()[:32]}.png"
    known = cache.read_file(name) if made is not None else None
    if known is not None and known.startswith(PNG_SIGNATURE):
        return known
    if not plots.available():
        return None
    picture = plots.probe_png(rows)
    if made is not None:
        cache.write_file(name, picture)
    return picture


def _write(path: Path, data: bytes) -> None:
    from zoo.files.atomic import atomic_write

    try:
        atomic_write(path, data)
    except OSError as exc:
        raise ZooError(f"cannot write {path}: {exc.strerror or exc}", exit_code=1) from None
