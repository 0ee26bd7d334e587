"""What this CPU is: its instruction-set extensions (which decide zoo's CPU defaults) and an
identity for caches of what was compiled or measured on it."""

from __future__ import annotations

import functools
import hashlib
import platform


def cpu_features() -> frozenset[str]:
    """This CPU's instruction-set extensions, lower-case without underscores (``avx2``,
    ``avx512f``, ``avx512bf16``, ``amxbf16``, ...): torch's own detection where it has one
    (``torch.cpu.get_capabilities``, torch >= 2.8), else the flags of /proc/cpuinfo."""
    import torch

    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            return frozenset(k.replace("_", "").lower() for k, v in get().items() if v is True)
        except Exception:  # a torch build without the query
            pass
    return listed_features()


def listed_features() -> frozenset[str]:
    """The extensions /proc/cpuinfo lists, spelled as ``cpu_features`` spells them (empty where
    there is no /proc/cpuinfo): read without importing torch, for keys a command computes
    before it knows whether it needs torch at all."""
    flags = _cpuinfo("flags")
    return frozenset(x.replace("_", "") for x in flags.split()) if flags else frozenset()


@functools.lru_cache(maxsize=1)
def cpu_identity() -> str:
    """A short key for this kind of CPU: its model name, its instruction-set extensions and
    its core count. Something compiled or timed on one CPU is kept under this key, so a run
    directory copied to another machine measures again there instead of trusting figures of
    another CPU."""
    import os

    parts = [
        platform.machine(),
        _cpuinfo("model name") or platform.processor(),
        ",".join(sorted(cpu_features())),
        str(os.cpu_count()),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _cpuinfo(field: str) -> str:
    """The first value of ``field`` in /proc/cpuinfo ('' where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""
