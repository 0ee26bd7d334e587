"""``python -m zoo`` in a child process that stops at one chosen moment and says so on a pipe,
so that a test kills or signals it at exactly that moment instead of polling for it against
the clock.

The moments are the calls zoo makes to the operating system and to torch, watched in the child
(nothing of zoo is replaced): ``fsync`` (a file's bytes are written and synced to its
temporary file, not yet renamed into place), ``replace`` (a file was renamed into place), and
``forward`` (the first forward pass after such a rename: training runs again). The child then
waits on a second pipe, forever unless the test lets it go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

# Seconds after which a child that neither stopped nor ended is taken as hung: far beyond any
# run of the tests, even on a loaded 2-core machine where an epoch took 5 minutes.
HANG = 3600

CHILD = r"""
import fnmatch, json, os, sys

spec = json.loads(os.environ.pop("ZOO_TEST_MOMENT"))
seen, armed = [0], [False]


def matches(path):
    return any(fnmatch.fnmatch(path, pattern) for pattern in spec["paths"])


def stop():
    os.write(spec["report"], b"stopped\n")
    os.read(spec["resume"], 1)  # until the test lets it go on (or kills it)


def counted(path):
    if not matches(path):
        return False
    seen[0] += 1
    return seen[0] == spec["count"]


real_fsync, real_replace = os.fsync, os.replace


def fsync(fd):
    real_fsync(fd)
    if spec["at"] == "fsync" and counted(os.readlink(f"/proc/self/fd/{fd}")):
        stop()


def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if spec["at"] in ("replace", "forward") and counted(os.fspath(dst)):
        if spec["at"] == "replace":
            stop()
        armed[0] = True


os.fsync, os.replace = fsync, replace
if spec["at"] == "forward":
    import torch

    def hook(module, args):
        if armed[0]:
            armed[0] = False
            stop()

    torch.nn.modules.module.register_module_forward_pre_hook(hook)
sys.argv = ["zoo", *spec["args"]]
from zoo.cli import main

main()
"""


class Child:
    """``zoo ARGS`` that stops at the ``count``-th moment ``at`` whose path matches one of the
    globs ``paths``; its output goes to ``log``."""

    def __init__(
        self, args: list[str], log: Path, *, at: str, paths: list[str], count: int = 1
    ) -> None:
        self.log = log
        report_r, report_w = os.pipe()
        resume_r, resume_w = os.pipe()
        spec = {"args": args, "at": at, "paths": paths, "count": count}
        spec |= {"report": report_w, "resume": resume_r}
        env = {**os.environ, "ZOO_TEST_MOMENT": json.dumps(spec)}
        with log.open("a") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CHILD],
                stdout=f,
                stderr=f,
                env=env,
                pass_fds=(report_w, resume_r),
            )
        os.close(report_w)
        os.close(resume_r)
        self.report, self.resume = report_r, resume_w

    def wait_stopped(self, limit: float = HANG) -> None:
        """Until the child stopped at its moment; fails if it ended first or ``limit`` passed
        (a limit against a hang, not a timing)."""
        ready, _, _ = select.select([self.report], [], [], limit)
        assert ready, f"not stopped in {limit}s:\n{self.log.read_text()}"
        assert os.read(self.report, 8) == b"stopped\n", f"ended first:\n{self.log.read_text()}"

    def kill(self) -> None:
        """SIGKILL, at the moment it stopped."""
        self.wait_stopped()
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=HANG) == -signal.SIGKILL
        self._close()

    def signal_and_go_on(self, signum: int) -> None:
        """Send ``signum`` at the moment it stopped, then let it go on."""
        self.wait_stopped()
        os.kill(self.proc.pid, signum)
        os.write(self.resume, b"x")

    def wait(self) -> int:
        code = self.proc.wait(timeout=HANG)
        self._close()
        return code

    def _close(self) -> None:
        for fd in (self.report, self.resume):
            with contextlib.suppress(OSError):  # closed already
                os.close(fd)
