"""Where and how a run executes: device, precision, processes, seeds, memory readings."""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import resource
import sys
from dataclasses import dataclass

import numpy as np
import torch

from zoo.errors import ZooError, shown
from zoo.train.config import PRECISIONS


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
        # Without a GPU, --device cuda fails in resolve_device with a clear message.
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


def resolve_device(text: str, dist: Dist | None = None) -> torch.device:
    """``auto`` takes the GPU when there is one (each local rank its own)."""
    local = dist.local_rank if dist else 0
    text = text.strip().lower()
    if text in ("auto", "cuda") and dist is not None and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if dist.local_world > count:
            raise ZooError(
                f"{dist.local_world} processes on this machine but {count} CUDA GPU(s): NCCL "
                "needs a GPU per process; lower --nproc (torchrun: --nproc-per-node)"
            )
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local)
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ZooError("--device mps: Apple's Metal backend is not available here")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
            raise ZooError(
                f"--device {text}: no CUDA GPU is available (torch "
                f"{torch.__version__}, {build}); use --device cpu"
            )
        if text != "cuda" and dist is not None and dist.enabled:
            raise ZooError(
                f"--device {text} names one GPU for every process; use --device cuda (each "
                "process takes the GPU of its local rank)"
            )
        index = local if text == "cuda" else int(text.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise ZooError(f"--device {text}: only {count} CUDA device(s) (0-{count - 1})")
        return torch.device("cuda", index)
    raise ZooError(f"unknown device {shown(text)}: use auto, cpu, cuda, cuda:N or mps")


def check_precision(text: str) -> str:
    """A ``--precision`` value, refused in one line when it is not one of ``PRECISIONS``."""
    if text not in PRECISIONS:
        raise ZooError(f"--precision must be one of {', '.join(PRECISIONS)}, got {shown(text)}")
    return text


def resolve_precision(
    text: str, device: torch.device, net: torch.nn.Module | None = None
) -> torch.dtype:
    """The autocast dtype. ``auto``: bf16 on CUDA; on the CPU, what ``cpu_defaults`` says for
    ``net`` on this CPU (fp32 while the network is not known yet)."""
    check_precision(text)
    if text == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        if device.type == "cpu" and net is not None and cpu_defaults(cpu_features(), net).bf16:
            return torch.bfloat16
        return torch.float32
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[text]
    if dtype == torch.float16 and device.type == "cpu":
        raise ZooError("--precision fp16 needs a GPU; use bf16 on the CPU")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ZooError("--precision bf16: this GPU has no bf16 support; use fp16")
    return dtype


def use_channels_last(
    setting: bool | None, device: torch.device, net: torch.nn.Module, precision: str = "auto"
) -> bool:
    """The memory format: as set, else channels-last for networks with convolutions on CUDA,
    and on the CPU where ``cpu_defaults`` says so for the precision the network runs in
    (``precision`` as given; ``auto`` follows ``cpu_defaults`` too)."""
    if setting is not None:
        return setting
    convs = any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    if device.type == "cuda":
        return convs
    if device.type != "cpu" or not convs:
        return False
    if resolve_precision(precision, device, net) == torch.bfloat16:
        return True  # bf16 convolutions ran fastest channels-last for every network measured
    return cpu_defaults(cpu_features(), net).channels_last


@dataclass(frozen=True)
class CpuDefaults:
    channels_last: bool  # in fp32
    bf16: bool


def cpu_defaults(features: frozenset[str], net: torch.nn.Module) -> CpuDefaults:
    """zoo's defaults for ``net`` on a CPU with ``features`` (``cpu_features()``), from
    ``benchmarks/cpu_defaults.py`` (the figures are in docs/performance.md):

    - bf16 autocast where the CPU multiplies bf16 matrices in hardware (AMX-BF16,
      ``amxbf16``) and the network has no convolution with overlapping windows (transformers
      and MLPs; a ViT's patch embedding does not count): a ViT trained 1.14 and inferred 2.2
      times as fast. Convolutional networks ran faster still in bf16 with channels-last, but
      bf16 training of a small ResNet diverged where fp32 did not: they stay in fp32 unless
      ``--precision bf16`` asks (and then run channels-last).
    - channels-last in fp32 for networks with convolutions and no batch normalization, where
      the CPU has AVX-512 (``avx512f``): simplecnn trained 1.36 and inferred 2.5 times as
      fast; resnet18, with batch normalization, ran 15% slower in training and 30% slower in
      inference, so it stays contiguous.
    - Anywhere else (AVX2 only, Arm, not detected): fp32 and the contiguous format.
    """
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    overlapping = any(
        any(s < k for s, k in zip(_pair(m.stride), _pair(m.kernel_size), strict=True))
        for m in convs
    )
    norms = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    return CpuDefaults(
        channels_last=bool(convs) and not norms and "avx512f" in features,
        bf16="amxbf16" in features and not overlapping,
    )


def _pair(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return (value, value) if isinstance(value, int) else tuple(value)


def cpu_features() -> frozenset[str]:
    """This CPU's instruction-set extensions, lower-case without underscores (``avx2``,
    ``avx512f``, ``avx512bf16``, ``amxbf16``, ...): torch's own detection where it has one
    (``torch.cpu.get_capabilities``, torch >= 2.8), else the flags of /proc/cpuinfo."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            return frozenset(k.replace("_", "").lower() for k, v in get().items() if v is True)
        except Exception:  # a torch build without the query
            pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(x.replace("_", "") for x in line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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
