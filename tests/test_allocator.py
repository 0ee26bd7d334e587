"""Freed memory stays in the process after keep_freed_memory() (glibc only)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from zoo.train.allocator import keep_freed_memory

PROBE = """
import numpy as np
from zoo.train.allocator import keep_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

applied = {apply} and keep_freed_memory()
before = rss_mb()
block = np.ones(64 * 2**20 // 8)  # 64 MB: glibc would mmap it and unmap it when freed
del block
print(applied, round(rss_mb() - before))
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_freed_blocks_stay_for_reuse() -> None:
    def probe(apply: bool) -> list[str]:
        code = textwrap.dedent(PROBE.format(apply=apply))
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        return result.stdout.split()

    assert probe(False) == ["False", "0"]  # returned to the system at once
    applied, kept = probe(True)
    assert applied == "True" and int(kept) >= 60


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
