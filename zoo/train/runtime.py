"""How a training run executes beside its device (``zoo.device``): its processes (torchrun's
environment, the process group), thread count, seeds and memory readings."""

from __future__ import annotations

import importlib
import os
import random
import resource
import sys
from dataclasses import dataclass

import numpy as np
import torch

from zoo.errors import ZooError, shown


@dataclass
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def _env_int(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None:
        if default is None:
            raise ZooError(
                f"WORLD_SIZE is set but {name} is not: start distributed runs with torchrun "
                "(python -m torch.distributed.run) or zoo train --nproc N"
            )
        return default
    try:
        return int(text)
    except ValueError:
        raise ZooError(f"environment variable {name}={shown(text)} is not an integer") from None


def init_distributed(device_text: str) -> Dist:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU), if any.

    torchrun describes each process in the environment: WORLD_SIZE, RANK, LOCAL_RANK,
    LOCAL_WORLD_SIZE, and MASTER_ADDR/MASTER_PORT for the rendezvous of the process group.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world or not 0 <= local_rank < local_world:
        raise ZooError(
            f"inconsistent torchrun environment: RANK={rank}, LOCAL_RANK={local_rank}, "
            f"WORLD_SIZE={world}, LOCAL_WORLD_SIZE={local_world}"
        )
    if not dist.is_initialized():
        # Without a GPU, --device cuda fails in zoo.device.placement.resolve_device.
        cuda = torch.cuda.is_available() and device_text.strip().lower() in ("auto", "cuda")
        if cuda and local_rank < torch.cuda.device_count():  # else resolve_device refuses
            torch.cuda.set_device(local_rank)
        # Imported before the group exists, on purpose: its functions take
        # ``group=group.WORLD`` as a default argument, evaluated at import. Imported later (DDP
        # does, through torch._dynamo), they would hold the live group for good, and
        # destroy_process_group() could not end it (see leave_distributed).
        importlib.import_module("torch.distributed.nn.functional")
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=rank, local_rank=local_rank, world=world, local_world=local_world)


def leave_distributed(dist: Dist | None) -> None:
    """Leave the process group, so that it is gone, threads and all, when training returns.

    gloo runs each collective on a worker thread, which drops its last reference to the
    collective's tensors a moment after the caller has seen it complete. Freeing a tensor that
    Python also knew needs the GIL; if this process is by then shutting its interpreter down,
    CPython ends the thread with pthread_exit, whose unwinding through a C++ destructor calls
    std::terminate: "terminate called without an active exception", SIGABRT, exit 134 after
    every file was written (now and then: it is a race). destroy_process_group() joins those
    threads, with the GIL released, but only when it drops the last reference to the group:
    the caller must have released its DDP wrapper (whose Reducer holds one) first, and
    init_distributed keeps torch.distributed.nn from holding another.
    """
    if dist is None or not dist.enabled or not torch.distributed.is_initialized():
        return
    torch.distributed.destroy_process_group()


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU thread count for this process (None leaves torch's own).
    Float reductions split across threads, so the count is part of what makes a CPU run
    reproducible bit for bit."""
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one epoch on one rank, for torch, numpy and python's ``random`` alike
    (augmentation policies and dropout draw from all three): a function of these alone, so a
    resumed run draws exactly the numbers an uninterrupted one would."""
    return (seed * 1_000_003 + epoch * 1_009 + rank * 7_919 + 1) % 2**63


def peak_memory_mb(device: torch.device, workers: bool = False) -> dict[str, float]:
    """Peak resident memory of this process, with ``workers`` that of its largest child process
    (the DataLoader workers, alive while a run lasts) and, on CUDA, peak allocated GPU memory.

    The process's figure is what ``/usr/bin/time -v`` reports as its maximum resident set size
    for a run of ``zoo`` (whose exit adds nothing: ``zoo.cli.quick_exit``). A worker's figure
    counts the pages it shares with this process, as ``/usr/bin/time`` does; the larger of the
    two is ``/usr/bin/time``'s figure for the whole run.
    """
    out = {"peak_rss_mb": max(_rusage_mb(resource.RUSAGE_SELF), _proc_mb("self", "VmHWM"))}
    if workers:
        out["workers_peak_rss_mb"] = max(child_peaks_mb(), default=0.0)
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def child_peaks_mb() -> list[float]:
    """The peak resident memory of each live child process (Linux /proc; empty elsewhere)."""
    me = str(os.getpid())
    peaks = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat") as f:
                # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
                ppid = f.read().rpartition(")")[2].split()[1]
        except (OSError, IndexError):
            continue
        if ppid == me:
            peak = _proc_mb(pid, "VmHWM")
            if peak:
                peaks.append(peak)
    return peaks


def _rusage_mb(who: int) -> float:
    rss = resource.getrusage(who).ru_maxrss
    return round(rss / 2**20 if sys.platform == "darwin" else rss / 1024, 1)


def _proc_mb(pid: str, field: str) -> float:
    """A ``kB`` field of /proc/PID/status in MiB (0 where unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return _rusage_mb(resource.RUSAGE_SELF)
