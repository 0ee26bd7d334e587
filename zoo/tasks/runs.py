"""Reading run directories for ``zoo runs``: what each run is, how far it got and how well.

A run directory is found by its ``config.toml`` (written by zoo before the first epoch). Only
the small files are read (``zoo.files.records``: ``config.toml``, ``metrics.jsonl``,
``summary.json``, ``run.json``) and the lock ``.zoo.lock`` is probed; never weights, never torch,
so hundreds of runs list in well under a second. A run whose records cannot be read is damaged:
it is named and left out, and the others are listed.

The status needs evidence:

- ``complete`` / ``stopped early``: ``summary.json`` is there (its ``stopped`` says which);
- ``failed``: ``run.json`` records a failure (a NaN loss, a callback's error);
- ``running``: a live process holds the run's lock (``zoo train`` takes ``fcntl.flock`` on
  ``RUN/.zoo.lock`` while it trains; the lock dies with the process);
- ``interrupted``: none of these (killed, Ctrl-C, or a machine that went away).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, did_you_mean
from zoo.files import records
from zoo.files.reading import open_regular

LOCK = ".zoo.lock"
# Folders inside a run directory, and others never holding runs: not searched.
NOT_RUNS = {"checkpoints", "tensorboard", "__pycache__", "node_modules", "mlruns"}
STATUSES = ("complete", "stopped early", "failed", "running", "interrupted")
# Columns ``--sort`` accepts beside metric names, and whether larger sorts first.
COLUMNS = {
    "name": False,
    "started": False,
    "status": False,
    "epochs": True,
    "images_per_second": True,
}
_STAMP = re.compile(r"(\d{8})-(\d{6})(?:-\d+)?$")  # runs/ARCH-YYYYMMDD-HHMMSS[-N]


@dataclass
class RunInfo:
    """One run directory, as ``zoo runs`` shows it (``to_json`` is the stable ``--json`` row)."""

    path: Path
    name: str
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any] | None
    record: dict[str, Any]
    status: str
    best: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs_done(self) -> int:
        if self.summary and isinstance(self.summary.get("epochs_completed"), int):
            return self.summary["epochs_completed"]
        return len(self.history)

    @property
    def epochs_planned(self) -> int | None:
        epochs = self.config.get("epochs")
        return epochs if isinstance(epochs, int) else None

    @property
    def images_per_second(self) -> float | None:
        if self.summary and isinstance(self.summary.get("images_per_second"), (int, float)):
            return float(self.summary["images_per_second"])
        seconds = sum(_number(r.get("seconds")) or 0.0 for r in self.history)
        images = sum(
            (_number(r.get("seconds")) or 0.0) * (_number(r.get("images_per_second")) or 0.0)
            for r in self.history
        )
        return round(images / seconds, 1) if seconds else None

    @property
    def started(self) -> str | None:
        """ISO 8601: from run.json, else from a default run name's timestamp."""
        if isinstance(self.record.get("started"), str):
            return self.record["started"]
        match = _STAMP.search(self.path.name)
        if not match:
            return None
        day, clock = match.groups()
        return f"{day[:4]}-{day[4:6]}-{day[6:]}T{clock[:2]}:{clock[2:4]}:{clock[4:]}"

    @property
    def stopped(self) -> str | None:
        return (self.summary or {}).get("stopped")

    @property
    def error(self) -> str | None:
        failed = self.record.get("failed")
        return failed.get("error") if isinstance(failed, dict) else None

    def metrics(self) -> list[str]:
        """The numeric columns of metrics.jsonl, in the order they first appear."""
        names: dict[str, None] = {}
        for record in self.history:
            for key, value in record.items():
                if key not in names and key != "epoch" and _number(value) is not None:
                    names[key] = None
        return list(names)

    def best_of(self, metric: str) -> dict[str, Any] | None:
        """The best value of a metric over the epochs (lowest for losses) and its epoch."""
        lower = metric.endswith("loss")
        best: dict[str, Any] | None = None
        for record in self.history:
            value = _number(record.get(metric))
            if value is None or math.isnan(value):
                continue
            if best is None or (value < best["value"] if lower else value > best["value"]):
                best = {"metric": metric, "value": value, "epoch": record.get("epoch")}
        return best

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "arch": self.config.get("arch"),
            "data": self.config.get("data"),
            "status": self.status,
            "stopped": self.stopped,
            "error": self.error,
            "epochs_done": self.epochs_done,
            "epochs_planned": self.epochs_planned,
            "best": self.best or None,
            "images_per_second": self.images_per_second,
            "started": self.started,
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# Besides config.toml, what only a run directory holds: a config.toml beside one of them that
# zoo did not write (or that cannot be read) is a damaged run, not someone else's file.
_OUTPUTS = (records.METRICS, records.SUMMARY, records.RECORD, "model.safetensors", "checkpoints")


def is_run(path: Path) -> bool:
    """A zoo run directory: its config.toml is one zoo wrote, or a config.toml beside a run's
    other outputs (a damaged run, which ``read`` names). A folder holding only a hand-written
    config.toml is not a run."""
    try:
        with open_regular(path / records.CONFIG) as f:
            if f.read(14) == b"zoo_version = ":
                return True
    except FileNotFoundError:
        return False
    except OSError:
        pass  # a special or unreadable config.toml: a run only if the rest says so
    return any(os.path.lexists(path / name) for name in _OUTPUTS)


def find(roots: list[Path]) -> list[tuple[Path, Path]]:
    """``(root, run)`` for every run directory under the roots (a root may be a run itself);
    run directories are not searched further, nor hidden folders."""
    found: list[tuple[Path, Path]] = []
    for root in roots:
        if not root.is_dir():
            raise ZooError(f"{root} is not a directory")
        stack = [root]
        while stack:
            folder = stack.pop()
            if is_run(folder):
                found.append((root, folder))
                continue
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
            except OSError:
                continue
            stack += [
                Path(e.path)
                for e in entries
                if e.is_dir(follow_symlinks=False)
                and not e.name.startswith(".")
                and e.name not in NOT_RUNS
            ]
    return found


def lock_held(run: Path) -> bool:
    """Whether a live process holds the run's lock (``zoo.train.rundir.writer``)."""
    from zoo.train.rundir import writer

    return writer(run) is not None


def run_name(run: Path, root: Path | None = None) -> str:
    """How a run is named in a listing: its path under the folder searched."""
    return run.relative_to(root).as_posix() if root is not None and run != root else run.name


def read(run: Path, root: Path | None = None) -> RunInfo:
    """One run directory's files, its status and its best monitored epoch; ``records.Damaged``
    when one of them cannot be read."""
    config = records.config(run)
    if config is None:
        raise records.Damaged(run / records.CONFIG, "is missing")
    if "zoo_version" not in config:
        raise records.Damaged(run / records.CONFIG, "was not written by zoo (no zoo_version)")
    history = records.history(run)
    summary = records.document(run / records.SUMMARY)
    record = records.document(run / records.RECORD) or {}
    info = RunInfo(run, run_name(run, root), config, history, summary, record, status="interrupted")
    if summary is not None:
        info.status = "stopped early" if summary.get("stopped") else "complete"
    elif info.error is not None:
        info.status = "failed"
    elif lock_held(run):
        info.status = "running"
    info.best = _best(info)
    return info


def _best(info: RunInfo) -> dict[str, Any]:
    """summary.json's best epoch; for an unfinished run, the best so far of the monitored
    metric (``--monitor``, or its training twin when the run has no validation)."""
    best = (info.summary or {}).get("best")
    if isinstance(best, dict) and best.get("metric"):
        return {"metric": best["metric"], "value": best.get("value"), "epoch": best.get("epoch")}
    monitor = str(info.config.get("monitor") or "val_accuracy")
    names = info.metrics()
    if monitor not in names and monitor.startswith(("val_", "ema_val_")):
        monitor = "train_accuracy" if monitor.endswith("accuracy") else "train_loss"
    return info.best_of(monitor) or {}


def collect(
    roots: list[Path], pattern: str | None = None, sort: str | None = None
) -> tuple[list[RunInfo], list[records.Damaged]]:
    """Every run under the roots whose name matches the glob, sorted (default: by start), and
    the damaged ones, left out."""
    runs: list[RunInfo] = []
    damaged: list[records.Damaged] = []
    for root, run in find(roots):
        if pattern and not fnmatch.fnmatchcase(run_name(run, root), pattern):
            continue
        try:
            runs.append(read(run, root))
        except records.Damaged as exc:
            damaged.append(exc)
    return order(runs, sort or "started"), damaged


def order(runs: list[RunInfo], key: str) -> list[RunInfo]:
    """Sorted by a column or by each run's best value of a metric, best first; runs without
    the value last."""
    if key in COLUMNS:
        values = {
            "name": lambda r: r.name,
            "started": lambda r: r.started or "",
            "status": lambda r: STATUSES.index(r.status),
            "epochs": lambda r: r.epochs_done,
            "images_per_second": lambda r: r.images_per_second,
        }[key]
        present = [r for r in runs if values(r) is not None]
        missing = [r for r in runs if values(r) is None]
        return sorted(present, key=values, reverse=COLUMNS[key]) + missing
    metrics = {m for r in runs for m in r.metrics()}
    if runs and key not in metrics:
        choices = sorted(COLUMNS) + sorted(metrics - set(COLUMNS))
        raise ZooError(
            f"--sort {key}: no run has this metric or column{did_you_mean(key, choices)} "
            f"(choose from {', '.join(choices)})"
        )
    scored = [(r, r.best_of(key)) for r in runs]
    present = [(r, b["value"]) for r, b in scored if b is not None]
    lower = key.endswith("loss")
    present.sort(key=lambda pair: pair[1], reverse=not lower)
    return [r for r, _ in present] + [r for r, b in scored if b is None]


def differences(runs: list[RunInfo]) -> dict[str, list[Any]]:
    """The settings whose values are not the same in every run (``out`` aside), each with the
    runs' values in order (None where a run does not set it)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.config))
    return {
        key: [r.config.get(key) for r in runs]
        for key in keys
        if key != "out" and len({json.dumps(r.config.get(key)) for r in runs}) > 1
    }
