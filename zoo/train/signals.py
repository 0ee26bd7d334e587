"""Signal handling around training: when Ctrl-C and SIGTERM may interrupt, and how.

A run interrupted between epochs keeps the last completed epoch; these context managers make
sure an interrupt never lands in the middle of writing one.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while an epoch is written, so an interrupt never splits an
    epoch's files (SIGKILL cannot be held: atomic writes and the write order cover it).

    The handlers note the signal and the interrupt is raised afterwards. (Blocking the signal
    in this thread is not enough: the kernel hands it to another of torch's threads.)
    """
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)

    try:
        previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (schedulers' preemption signal) like Ctrl-C, in the main thread."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
