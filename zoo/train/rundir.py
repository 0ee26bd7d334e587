"""The run directory: what a training run leaves behind, and the rules for reusing one.

RUN/model.safetensors         weights after the last completed epoch, with ModelInfo
RUN/model_ema.safetensors     EMA weights (with --ema)
RUN/config.json               timm/Hugging Face config: the run is also a timm folder
RUN/config.toml               the resolved configuration (valid as --config)
RUN/metrics.jsonl, .csv       one line per epoch
RUN/summary.json              best epoch, wall time, throughput, peak memory
RUN/README.md                 model card in the Hugging Face Hub's format (zoo.models.card)
RUN/checkpoints/last|best.safetensors, epoch-NNNN.safetensors   full training state
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.models.weights import atomic_write
from zoo.train.config import dump_toml

RUN_MARKERS = ("model.safetensors", "checkpoints", "config.toml", "metrics.jsonl")
RUN_OUTPUTS = (
    *RUN_MARKERS,
    "model_ema.safetensors",
    "metrics.csv",
    "summary.json",
    "config.json",
    "tensorboard",
    "confusion_matrix.png",
    "training_curves.png",
    "eval.json",
    "README.md",
)
LAST = Path("checkpoints/last.safetensors")
BEST = Path("checkpoints/best.safetensors")


def default_out(arch_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{arch_name}-{stamp}"
    out, n = base, 2
    while out.exists():
        out, n = Path(f"{base}-{n}"), n + 1
    return out


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def started_run(path: Path) -> bool:
    """A run killed before its first checkpoint: only zoo's ``config.toml`` is there."""
    config = path / "config.toml"
    try:
        return config.is_file() and config.read_text().startswith("zoo_version = ")
    except (OSError, UnicodeDecodeError):
        return False


def check_out(path: Path, overwrite: bool) -> None:
    """Refuse to write into a previous run unless asked to replace it."""
    if path.exists() and not path.is_dir():
        raise ZooError(f"--out {path} is a file, not a directory")
    if holds_run(path) and not overwrite:
        raise ZooError(
            f"--out {path} holds a previous run; add --overwrite to replace it or "
            f"use --resume {path} to continue it"
        )


def clear_previous(path: Path) -> None:
    """Remove a previous run's outputs (only zoo's own files) before a new run writes."""
    for name in RUN_OUTPUTS:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def prepare(
    path: Path, values: dict[str, Any], version: str, *, resume: bool, overwrite: bool
) -> None:
    """Create (or take over) the run directory and write the resolved config: a new run
    clears a previous one it may replace; a resumed one removes its killed writes' leftovers."""
    if resume:
        remove_partial(path)
    else:
        if overwrite:
            clear_previous(path)
        path.mkdir(parents=True, exist_ok=True)
    write_config(path, values, version)


def write_config(path: Path, values: dict[str, Any], version: str) -> None:
    atomic_write(path / "config.toml", dump_toml({"zoo_version": version, **values}).encode())


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl and metrics.csv from the full history (resume-safe)."""
    lines = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write(path / "metrics.jsonl", lines.encode())
    columns: list[str] = []
    for record in history:
        columns += [k for k in record if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(path / "metrics.csv", buffer.getvalue().encode())


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    atomic_write(path / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())


def epoch_checkpoints(path: Path) -> list[Path]:
    return sorted((path / "checkpoints").glob("epoch-*.safetensors"))


def remove_partial(path: Path) -> None:
    """Delete the temporary files that a killed run's atomic writes left behind (named
    ``.NAME.XXXX.tmp`` beside their target); only zoo's own names, completed files untouched."""
    found = [t for name in RUN_OUTPUTS for t in path.glob(f".{name}.*.tmp")]
    found += (path / "checkpoints").glob(".*.safetensors.*.tmp")
    for tmp in found:
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
