"""``zoo runs`` on many run directories, against ``zoo --help`` (the CLI's start-up alone).

Writes ``--count`` run directories as zoo lays them out (``config.toml``, ``metrics.jsonl``
with ``--epochs`` lines, ``summary.json`` for two runs in three, ``run.json``; no weights,
which ``zoo runs`` never reads) into a scratch folder, then runs ``zoo runs DIR``,
``zoo runs DIR --json --sort val_loss`` and ``zoo --help`` in turn, ``--repeats`` rounds, each a
fresh process. Prints each command's median wall time, its ratio to ``zoo --help`` measured in
the same rounds, and what listing costs per run beyond start-up.

    python benchmarks/runs_listing.py --count 300 --epochs 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_run(path: Path, n: int, epochs: int) -> None:
    path.mkdir(parents=True)
    (path / "config.toml").write_text(
        f'zoo_version = "0.1.0"\narch = "resnet18"\ndata = "/data/pets"\nepochs = {epochs}\n'
        f'lr = {n + 1}e-4\nbatch_size = 64\naug = ["hflip", "rotate:degrees=15"]\n'
    )
    lines = []
    for e in range(1, epochs + 1):
        record = {
            "epoch": e,
            "train_loss": 2 / e,
            "train_accuracy": 1 - 1 / (e + 1),
            "val_loss": 2.1 / e,
            "val_accuracy": 1 - 1.1 / (e + 1) + n * 1e-6,
            "val_precision": 0.9,
            "val_recall": 0.9,
            "val_f1": 0.9,
            "lr": 1e-3,
            "seconds": 12.5,
            "images_per_second": 1800.0 + n,
            "rss_mb": 2400.0,
        }
        lines.append(json.dumps(record) + "\n")
    (path / "metrics.jsonl").write_text("".join(lines))
    (path / "run.json").write_text(json.dumps({"started": "2026-11-21T10:15:00+00:00"}))
    if n % 3:
        best = {"metric": "val_accuracy", "value": 0.9, "epoch": epochs}
        summary = {"epochs_completed": epochs, "stopped": None, "best": best}
        (path / "summary.json").write_text(json.dumps({**summary, "images_per_second": 1800.0}))


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="run directories")
    parser.add_argument("--epochs", type=int, default=50, help="lines of each metrics.jsonl")
    parser.add_argument("--repeats", type=int, default=7, help="rounds of the three commands")
    args = parser.parse_args()
    zoo = [sys.executable, "-m", "zoo"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "runs"
        for n in range(args.count):
            write_run(root / f"sweep-{n % 10}" / f"run-{n:04d}", n, args.epochs)
        commands = {
            "zoo runs": [*zoo, "runs", str(root)],
            "zoo runs --json --sort val_loss": [
                *zoo,
                "runs",
                str(root),
                "--json",
                "--sort",
                "val_loss",
            ],
            "zoo --help": [*zoo, "--help"],
        }
        wall(commands["zoo --help"])  # warm the file cache and the bytecode
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                times[name].append(wall(command))
    base = statistics.median(times["zoo --help"])
    print(f"{args.count} runs of {args.epochs} epochs, {args.repeats} rounds (median wall time)")
    for name, values in times.items():
        median = statistics.median(values)
        extra = (median - base) / args.count * 1000
        print(f"{name:32s} {median:6.3f} s  x{median / base:4.2f} of zoo --help  "
              f"{extra:6.2f} ms per run beyond start-up")  # fmt: skip


if __name__ == "__main__":
    main()
