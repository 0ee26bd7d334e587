"""``zoo benchmark``: how fast an architecture trains and predicts here, and its peak memory.

Synthetic inputs on the device, so the figures are the network's and the hardware's alone (the
data path is measured by benchmarks/). Each phase runs warm-up steps first (torch.compile and
cuDNN autotuning happen there), then timed steps; the device is synchronised only at the ends.
Training steps are those of ``zoo train``: autocast forward, cross-entropy, backward, Adam step.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zoo.errors import ZooError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass
class BenchConfig:
    arch: str
    batch_size: int = 64
    image_size: tuple[int, int] | None = None  # None: the architecture's default, else 224
    in_chans: int = 3
    num_classes: int = 1000
    device: str = "auto"
    amp: bool | None = None  # None: zoo's default (zoo.device.precision.resolve_precision)
    channels_last: bool | None = None  # None: zoo's default (device.defaults.use_channels_last)
    compile: bool = False
    compile_mode: str = "default"  # "reduce-overhead" replays CUDA graphs
    warmup: int = 3
    steps: int = 10
    train: bool = True
    inference: bool = True


def check(cfg: BenchConfig) -> None:
    """Bad settings fail before anything is built."""
    for name in ("batch_size", "in_chans", "num_classes", "steps"):
        if getattr(cfg, name) < 1:
            raise ZooError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.warmup < 0:
        raise ZooError("--warmup cannot be negative")
    if cfg.image_size is not None and min(cfg.image_size) < 1:
        raise ZooError("--image-size must be positive")
    if not (cfg.train or cfg.inference):
        raise ZooError("nothing to measure: --no-train and --no-inference")
    if cfg.compile_mode not in COMPILE_MODES:
        raise ZooError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}")


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Measure training and inference throughput; a JSON-ready report."""
    check(cfg)
    import torch
    from torch import nn

    from zoo.device.defaults import use_channels_last
    from zoo.device.placement import resolve_device
    from zoo.device.precision import autocast, resolve_precision
    from zoo.plugins.components import resolve

    resolved = resolve("architecture", cfg.arch)
    default = getattr(resolved.factory, "default_image_size", None)
    size = cfg.image_size or (tuple(default) if default else (224, 224))
    device = resolve_device(cfg.device)
    precision = "auto" if cfg.amp is None else ("bf16" if cfg.amp else "fp32")
    resolve_precision(precision, device)  # bad combinations fail before building
    torch.manual_seed(0)
    net = resolved.build(num_classes=cfg.num_classes, in_chans=cfg.in_chans, image_size=size)
    if not isinstance(net, nn.Module):
        raise ZooError(f"{resolved.label} returned {type(net).__name__}, not a torch.nn.Module")
    amp_dtype = resolve_precision(precision, device, net)
    channels_last = use_channels_last(cfg.channels_last, device, net, precision)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device, memory_format=memory_format)
    model = torch.compile(net, mode=cfg.compile_mode) if cfg.compile else net
    x = torch.randn(cfg.batch_size, cfg.in_chans, *size, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    report: dict[str, Any] = {
        "arch": cfg.arch,
        "qualified": resolved.component.qualified,
        "params": sum(p.numel() for p in net.parameters()),
        "batch_size": cfg.batch_size,
        "image_size": list(size),
        "in_chans": cfg.in_chans,
        "num_classes": cfg.num_classes,
        "device": str(device),
        "device_name": _device_name(device),
        "precision": str(amp_dtype).removeprefix("torch."),
        "channels_last": channels_last,
        "compile": cfg.compile,
        "compile_mode": cfg.compile_mode if cfg.compile else None,
        "warmup_steps": cfg.warmup,
        "steps": cfg.steps,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if cfg.inference:
        model.eval()

        @torch.inference_mode()
        def infer() -> None:
            with autocast(device, amp_dtype):
                model(x)

        report["inference"] = _phase(infer, cfg, sync, device)
    if cfg.train:
        model.train()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
        loss_fn = nn.CrossEntropyLoss()

        def train_step() -> None:
            with autocast(device, amp_dtype):
                loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        report["train"] = _phase(train_step, cfg, sync, device)
    report["peak_rss_mb"] = _rss_mb("VmHWM")
    return report


def _phase(
    step: Callable[[], None], cfg: BenchConfig, sync: Callable[[], None], device: Any
) -> dict[str, Any]:
    """Warm-up steps, then timed steps; throughput and this phase's peak memory."""
    import torch

    reset = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(cfg.warmup):
        step()
    sync()
    t1 = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    sync()
    seconds = time.perf_counter() - t1
    result: dict[str, Any] = {
        "images_per_second": round(cfg.steps * cfg.batch_size / seconds, 1),
        "step_ms": round(1000 * seconds / cfg.steps, 3),
        "warmup_seconds": round(t1 - t0, 3),
        "peak_rss_mb": _rss_mb("VmHWM") if reset else None,
    }
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def _reset_peak_rss() -> bool:
    """Start a new peak-RSS measurement (Linux: /proc/self/clear_refs); False where the peak
    cannot be reset, so that a phase reports no peak rather than an earlier phase's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) from /proc, else the process's peak from rusage."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
