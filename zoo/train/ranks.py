"""What the processes of a distributed run agree on: failures, the run directory, buffers.

A rank that fails while the others wait in a collective would leave them hanging until the
process group's timeout (30 minutes for gloo). Every step where ranks do different work (rank 0
writing files, one process per machine preparing the data) therefore runs inside
``together()``: afterwards all ranks learn whether any failed, and all stop, with the first
failure's message reported once, by rank 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.train.runtime import Dist


class Secondary(ZooError):
    """A failure that rank 0 reports for the whole run; the other ranks exit with its code
    without repeating it."""


def _device() -> torch.device:
    """Where this process group's collectives take their tensors (NCCL needs CUDA ones)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_text(dist: Dist, text: str | None, src: int = 0) -> str:
    """``text`` as rank ``src`` has it, on every rank (a tensor of UTF-8 bytes, no pickle)."""
    if not dist.enabled:
        return text or ""
    device = _device()
    data = (text or "").encode() if dist.rank == src else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    torch.distributed.broadcast(size, src)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if dist.rank == src and data:
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    torch.distributed.broadcast(buffer, src)
    return buffer.cpu().numpy().tobytes().decode()


def first_failure(dist: Dist, code: int) -> tuple[int, int] | None:
    """Every rank gives its exit code (0: fine); the first failed rank and its code, or None."""
    codes = torch.zeros(dist.world, dtype=torch.int64, device=_device())
    codes[dist.rank] = code
    torch.distributed.all_reduce(codes)
    failed = [(rank, int(c)) for rank, c in enumerate(codes.tolist()) if c]
    return failed[0] if failed else None


@contextlib.contextmanager
def together(dist: Dist) -> Iterator[None]:
    """Run a block on every rank; if it raises on any rank, it raises on all of them.

    The block must not itself call collectives (a failed rank would skip them). Ctrl-C and
    SIGTERM pass straight through: every rank gets them, and peers may already be gone.
    """
    if not dist.enabled:
        yield
        return
    try:
        yield
    except Exception as exc:
        code = exc.exit_code if isinstance(exc, ZooError) else 1
        try:
            first, first_code = first_failure(dist, code) or (dist.rank, code)
            text = f"{exc}" if isinstance(exc, ZooError) else f"{type(exc).__name__}: {exc}"
            message = broadcast_text(dist, text, src=first)
        except Exception:  # the peers are gone: this rank's own error is all there is
            raise exc from None
        if dist.rank == first and (dist.main or not isinstance(exc, ZooError)):
            raise  # a bug's traceback stays with the rank that hit it
        if dist.main:
            raise ZooError(f"process {first}: {message}", exit_code=first_code) from None
        raise Secondary(message, exit_code=first_code) from None
    try:
        failure = first_failure(dist, 0)
        if failure is not None:
            message = broadcast_text(dist, None, src=failure[0])
    except Exception as exc:
        raise ZooError(f"lost contact with the other processes ({exc})", exit_code=1) from None
    if failure is not None:
        first, first_code = failure
        if dist.main:
            raise ZooError(f"process {first}: {message}", exit_code=first_code)
        raise Secondary(message, exit_code=first_code)


@torch.no_grad()
def broadcast_buffers(dist: Dist, *modules: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), so each evaluates the weights
    rank 0 saves."""
    if not dist.enabled:
        return
    for module in modules:
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, 0)


def max_over_ranks(dist: Dist, values: dict[str, float]) -> dict[str, float]:
    """The largest of each reading over all ranks (peak memory of the busiest process)."""
    if not dist.enabled:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return dict(zip(keys, tensor.tolist(), strict=True))
