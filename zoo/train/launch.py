"""``zoo train --nproc N``: the training in N processes on this machine, started and watched
by torch.distributed.run (torchrun), and how it ended said in one line.

Each process's standard error goes to a file while they run (their progress display stays on
standard output) and is shown when they have ended: a process killed by a signal (``kill -9``,
the kernel's out-of-memory killer) says nothing, and what the others say as torchrun stops them
(an interrupt, a broken connection) would only hide it. Then the one line is zoo's: which
process died, how, and what of the run is saved. Otherwise each process's own lines are shown,
as they would have been. torchrun's own log lines are silenced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def run_processes(config: Path, nproc: int, out: Path, threads: int) -> int:
    """Run ``zoo train --config CONFIG`` in ``nproc`` processes writing the run ``out``, with
    ``threads`` CPU threads each; the exit code (130 when interrupted). Raises ZooError (exit
    code 1) when a process was killed by a signal."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        args = [
            "--standalone",
            f"--nproc-per-node={nproc}",
            f"--log-dir={logs}",
            "--redirects=2",  # standard error, to files
            "-m",
            "zoo",
            "train",
            "--config",
            str(config),
        ]
        # torchrun would give each process one thread; share this machine's cores instead.
        preset = "OMP_NUM_THREADS" in os.environ
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        try:
            with _quiet(), _own_logs_unwarned(logs):
                run(parse_args(args))
        except ChildFailedError as exc:
            killed = killed_by_a_signal(exc.failures)
            if killed is not None:
                raise ZooError(_killed_line(*killed, nproc, out), exit_code=1) from None
            _replay(logs)
            code = exc.get_first_failure()[1].exitcode
            return 128 - code if code < 0 else code
        except SignalException:
            _replay(logs)
            return 130
        finally:
            if not preset:
                os.environ.pop("OMP_NUM_THREADS", None)
        _replay(logs)
    return 0


def killed_by_a_signal(failures: dict[int, Any]) -> tuple[int, Any] | None:
    """The rank and failure of the process that a signal killed (a negative exit code: it
    could not say anything itself), or None. torchrun stops the other processes with SIGTERM
    once one has died, so a death by another signal is the cause where there is one; failures
    are time-stamped to the second only, so among equals the lowest rank is named."""
    killed = [
        (-f.exitcode == signal.SIGTERM, f.timestamp, rank, f)
        for rank, f in failures.items()
        if f.exitcode < 0
    ]
    if not killed:
        return None
    *_, rank, failure = min(killed, key=lambda k: k[:3])
    return rank, failure


def _killed_line(rank: int, failure: Any, nproc: int, out: Path) -> str:
    try:
        name = signal.Signals(-failure.exitcode).name
    except ValueError:
        name = f"signal {-failure.exitcode}"
    return (
        f"process {rank} of {nproc} (pid {failure.pid}) was killed by {name}, so the run "
        f"stopped; {_saved(out)}"
    )


def _saved(out: Path) -> str:
    """What of the run in ``out`` is on disk, and how to continue it."""
    from zoo.models.weights import read_header
    from zoo.train.rundir import LAST

    try:
        epoch = (read_header(out / LAST).state or {}).get("epoch")
    except (OSError, ZooError):
        epoch = None
    if not epoch:
        return f"no epoch was saved (--out {out} can be used again)"
    return f"epoch {epoch} is the last saved (continue with `zoo train --resume {out}`)"


def _replay(logs: Path) -> None:
    """What the processes wrote to standard error, rank by rank."""
    files = sorted(logs.glob("**/stderr.log"), key=lambda p: (int(p.parent.name), str(p)))
    for path in files:
        with contextlib.suppress(OSError):
            sys.stderr.write(path.read_text(errors="replace"))
    sys.stderr.flush()


@contextlib.contextmanager
def _own_logs_unwarned(logs: Path) -> Iterator[None]:
    """No ``unclosed file`` warning for the processes' log files in ``logs``: torchrun closes
    them only when it kills a process, never when one ends on its own, and the warning would
    end every run with a line per process naming a file already deleted."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=f"unclosed file <_io.TextIOWrapper name='{re.escape(str(logs))}",
            category=ResourceWarning,
        )
        yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torchrun's log lines (processes started, signals sent, failures with their tracebacks)
    silenced: how the run ended is said once, by zoo or by the processes themselves."""
    names = ["torch.distributed.elastic", "torch.distributed.run"]
    names += [n for n in logging.root.manager.loggerDict if n.startswith(tuple(names))]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
