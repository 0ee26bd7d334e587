"""Keep freed memory in the process, for CPU training on Linux.

PyTorch's CPU tensors come from the C library's malloc. glibc serves blocks over 32 MB (a
simplecnn activation at 64 px and batch 64 is 34 MB) with a fresh mmap and unmaps them when
freed, and trims its heap as soon as 128 KB at its top are free: every training step then
faults all of its activation memory back in, page by page. Measured with
benchmarks/overhead.py and ``zoo benchmark`` on a 2-core machine, that cost 30% of a 64 px
step and half of a 128 px one (docs/performance.md). Only the command line calls this: the
process is then zoo's own, and a training process reuses its peak memory every step anyway.
"""

from __future__ import annotations

import ctypes
import platform
import sys

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_BYTES = 2**31 - 1  # the largest trim threshold mallopt's int accepts


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from its heap and keep freed memory for reuse
    (as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647`` would at start-up).

    Returns whether it applied: False off glibc (macOS, Windows, musl), where nothing changes.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
