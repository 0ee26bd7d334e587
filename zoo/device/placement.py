"""Which device a process runs on: ``--device`` resolved against what this machine has."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from zoo.errors import ZooError, shown

if TYPE_CHECKING:
    import torch


class Placement(Protocol):
    """A process's place among the processes of a run (``zoo.train.runtime.Dist``)."""

    local_rank: int
    local_world: int

    @property
    def enabled(self) -> bool: ...


def resolve_device(text: str, dist: Placement | None = None) -> torch.device:
    """``auto`` takes the GPU when there is one (each local rank its own)."""
    import torch

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


# Device nodes without which torch finds no GPU: CUDA's (Linux), ROCm's, WSL's GPU bridge.
GPU_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def known_cpu(text: str) -> bool:
    """Whether ``--device TEXT`` resolves to the CPU here, known without importing torch:
    ``cpu``, or ``auto`` on a Linux machine with none of the device nodes a CUDA, ROCm or WSL
    GPU needs (``resolve_device``'s other choice, Apple's Metal, exists only on macOS). False
    means only torch can tell."""
    import os
    import sys

    text = text.strip().lower()
    if text == "cpu":
        return True
    return text == "auto" and sys.platform == "linux" and not any(map(os.path.exists, GPU_NODES))
