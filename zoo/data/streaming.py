"""Streaming from the decoded cache: a map-style dataset over part of a file list, decoding on
first touch in DataLoader workers, for data larger than the memory budget."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.cache import UNREADABLE, DecodedCache, item_name
from zoo.errors import ZooError


class StreamedFolder:
    """A map-style dataset over part of a folder: items ``(uint8 [C, H, W] tensor, label)``.

    An unreadable file is reported once and replaced by the next readable file of the split,
    so batches keep their size (and the processes of a distributed run stay in step).
    ``decoded`` counts, per worker, the files decoded rather than read from the cache, so a
    run can show that later epochs decode nothing; ``bad`` marks the unreadable files found
    (both in shared memory: without a cache on disk, each worker's status table is its own).
    """

    def __init__(self, cache: DecodedCache, indices: list[int], labels: list[int]) -> None:
        import torch

        self.cache = cache
        self.indices = indices
        self.labels = labels
        self.decoded = torch.zeros(65, dtype=torch.int64).share_memory_()
        self.bad = torch.zeros(len(indices), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        import torch
        from torch.utils.data import get_worker_info

        for offset in range(len(self.indices)):
            j = (i + offset) % len(self.indices)
            pixels, error, decoded = self.cache.get(self.indices[j])
            if decoded:
                worker = get_worker_info()
                self.decoded[0 if worker is None else 1 + worker.id % 64] += 1
            if error:
                self.bad[j] = True
                path = item_name(self.cache.files, self.indices[j])
                print(f"warning: skipped unreadable image {path} ({error})", file=sys.stderr)
            if pixels is not None:
                return torch.from_numpy(np.array(pixels)), self.labels[j]
        raise ZooError("no readable image in this split")

    @property
    def paths(self) -> list[str]:
        """The file each item came from: an unreadable file's item is the next readable one's,
        as ``__getitem__`` returns it (so read this after the items were read)."""
        _, status = self.cache.arrays()
        bad = self.bad.tolist()
        readable = [not (bad[j] or status[i] == UNREADABLE) for j, i in enumerate(self.indices)]
        n = len(self.indices)
        source = list(range(n))
        if any(readable):
            following = None  # the next readable item, going round the end
            for j in reversed(range(2 * n)):
                if readable[j % n]:
                    following = j % n
                source[j % n] = following if following is not None else j % n
        return [item_name(self.cache.files, self.indices[k]) for k in source]

    def unreadable(self) -> list[Path | str]:
        _, status = self.cache.arrays()
        bad = self.bad.tolist()
        files = self.cache.files
        return [
            files[i] if isinstance(files, list) else item_name(files, i)
            for j, i in enumerate(self.indices)
            if bad[j] or status[i] == UNREADABLE
        ]
