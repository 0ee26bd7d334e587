"""What the whole-process benchmarks share: photo-like JPEG folders, timing whole commands in
turn (A B A B ...: a change in the machine's load falls on both) with their peak memory as
``/usr/bin/time -v`` reports it, medians and paired ratios.

Imports nothing heavy: the scripts that use it time other processes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def photo_like(path: Path, width: int, height: int, rng: np.random.Generator) -> None:
    """A JPEG with the statistics of a photo: low-frequency colour, a few edges, grain."""
    from PIL import Image, ImageDraw, ImageFilter

    field = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    im = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(1.5))
    grain = rng.normal(0, 6, (height, width, 3))
    pixels = (np.asarray(im, dtype=np.float32) + grain).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def photo_folder(
    root: Path, count: int, classes: int = 4, width: int = 500, height: int = 375, seed: int = 0
) -> Path:
    """``root/class<k>/<i>.jpg``: ``count`` photo-like JPEGs (written once; a complete folder
    from an earlier run with the same settings is reused)."""
    stamp = root / f".complete-{count}-{classes}-{width}x{height}-{seed}"
    if stamp.exists():
        return root

    def write(i: int) -> None:
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        photo_like(folder / f"{i:05d}.jpg", width, height, np.random.default_rng([seed, i]))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(write, range(count)))
    stamp.touch()
    return root


@dataclass
class Run:
    wall: float
    cpu: float
    peak_mb: float
    code: int
    output: str = ""


def run(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """One whole process: wall and CPU seconds and its peak resident memory (``ru_maxrss`` of
    the process and the children it waited for: the figure ``/usr/bin/time -v`` prints)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_mb=usage.ru_maxrss / 1024,
        code=proc.returncode,
        output=output,
    )


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)

    def median(self, what: str = "wall") -> float:
        return statistics.median(getattr(r, what) for r in self.runs)


def interleave(
    commands: dict[str, tuple[Sequence[str], dict[str, str] | None]],
    runs: int,
    warmup: int = 1,
    cwd: Path | None = None,
    check: bool = True,
) -> dict[str, Series]:
    """Run each command ``warmup`` times (not counted), then ``runs`` rounds of all of them in
    turn, the order rotating each round. A command that fails stops the benchmark with its
    output (``check``)."""
    results = {name: Series() for name in commands}
    names = list(commands)
    for round_ in range(warmup + runs):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            cmd, env = commands[name]
            r = run(cmd, env, cwd)
            if check and r.code != 0:
                sys.stderr.write(r.output[-4000:])
                raise SystemExit(f"{name} failed (exit {r.code}): {' '.join(cmd)}")
            if round_ >= warmup:
                results[name].runs.append(r)
    return results


def paired_ratio(a: Series, b: Series, what: str = "wall") -> float:
    """The median of the per-round ratios a/b."""
    return statistics.median(
        getattr(x, what) / getattr(y, what) for x, y in zip(a.runs, b.runs, strict=True)
    )


def load() -> float:
    return round(os.getloadavg()[0], 2)


def summary(results: dict[str, Series]) -> dict[str, Any]:
    """Median wall, CPU and peak memory of each command, and every run's wall time."""
    return {
        name: {
            "wall_s": round(s.median("wall"), 3),
            "cpu_s": round(s.median("cpu"), 3),
            "peak_mb": round(s.median("peak_mb"), 1),
            "walls": [round(r.wall, 3) for r in s.runs],
        }
        for name, s in results.items()
    }


def zoo_command(*args: str) -> list[str]:
    """``zoo ARGS`` with this interpreter (the environment the benchmark runs in)."""
    return [sys.executable, "-m", "zoo", *args]
