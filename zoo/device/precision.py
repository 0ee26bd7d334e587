"""The precision a forward pass autocasts to: ``--precision`` checked (torch-free, so option
parsing can check it) and resolved for a device and a network."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from zoo.errors import ZooError, shown

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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
    import torch

    from zoo.device.cpu import cpu_features
    from zoo.device.defaults import cpu_defaults

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


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s kind; nothing for fp32."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
