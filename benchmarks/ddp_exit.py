"""Stress test for the exit of two-process CPU training.

Runs ``zoo train ... --nproc 2`` (gloo on the CPU, launched by torchrun in-process) N times,
each in a fresh temporary directory, and records each exit code. Before the fix about one
run in seven exited 134 (``terminate called without an active exception``, SIGABRT in a
worker) after every file had been written.

    python benchmarks/ddp_exit.py            # 50 runs
    python benchmarks/ddp_exit.py -n 10 -v   # 10 runs, one line per run

Exits 1 if any run failed, so it can gate a change.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = [
    "train",
    "--arch",
    "simplecnn:dropout=0",
    "--image-size",
    "8",
    "--batch-size",
    "64",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--nproc",
    "2",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=50, help="number of runs (50)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run (300)")
    parser.add_argument("--tail", type=int, default=15, help="stderr lines kept per failure")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per run")
    args = parser.parse_args()

    codes: collections.Counter[int] = collections.Counter()
    failures: list[tuple[int, int, str]] = []
    started = time.perf_counter()
    for i in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="ddp-exit-") as tmp:
            out = Path(tmp) / "run"
            command = [sys.executable, "-m", "zoo", *COMMAND, "--out", str(out)]
            t0 = time.perf_counter()
            try:
                result = subprocess.run(
                    command,
                    cwd=tmp,
                    env=os.environ.copy(),
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                )
                code, stderr = result.returncode, result.stderr
            except subprocess.TimeoutExpired as exc:
                code = -1  # recorded as "timeout" below
                err = exc.stderr or b""
                stderr = err.decode(errors="replace") if isinstance(err, bytes) else err
            files = (out / "summary.json").is_file()
        codes[code] += 1
        if code != 0:
            tail = "\n".join(stderr.splitlines()[-args.tail :])
            failures.append((i, code, tail))
        if args.verbose or code != 0:
            label = "timeout" if code == -1 else f"exit {code}"
            print(
                f"run {i:3d}: {label}, {time.perf_counter() - t0:.1f} s, "
                f"summary.json {'written' if files else 'missing'}",
                flush=True,
            )
    seconds = time.perf_counter() - started

    for i, code, tail in failures:
        print(f"\n--- run {i}: exit {code}, last lines of stderr ---\n{tail}")
    seen = ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))
    print(
        f"\nruns {args.runs}, failures {len(failures)}, exit codes {{{seen}}}, "
        f"{seconds:.1f} s ({seconds / max(args.runs, 1):.1f} s per run)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
