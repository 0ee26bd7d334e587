"""zoo's defaults for running a network on a device: the memory format (channels-last or
contiguous) and, through ``zoo.device.precision``, bf16 autocast, chosen by the network's
layers and the CPU's features as measured by ``benchmarks/cpu_defaults.py``."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def use_channels_last(
    setting: bool | None, device: torch.device, net: torch.nn.Module, precision: str = "auto"
) -> bool:
    """The memory format: as set, else channels-last for networks with convolutions on CUDA,
    and on the CPU where ``cpu_defaults`` says so for the precision the network runs in
    (``precision`` as given; ``auto`` follows ``cpu_defaults`` too)."""
    from zoo.device.cpu import cpu_features
    from zoo.device.precision import resolve_precision

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
