"""Loading a list of image files with their labels into splits: decoded once through the
decoded cache, then held in memory as one uint8 tensor per split when they fit the memory budget,
else streamed from the cache through DataLoader workers. Every source that reads files (a folder,
a table, a plugin's reader) loads through here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.cache import DECODED, UNREADABLE, DecodedCache, Records, item_name, usable_cache
from zoo.data.splits import DataSplits, ImageTensors, default_workers
from zoo.data.streaming import StreamedFolder
from zoo.errors import ZooError

Label = int | list[int]


def label_tensor(labels: Sequence[Label], keep: np.ndarray, num_classes: int) -> Any:
    """The labels of ``keep``: int64 ``[K]`` class indices, or for label sets (lists of class
    indices: multi-label data) a ``{0, 1}`` float32 matrix ``[K, num_classes]``."""
    import torch

    chosen = [labels[int(i)] for i in keep]
    if not any(isinstance(y, (list, tuple)) for y in chosen):
        return torch.as_tensor(np.asarray(chosen, dtype=np.int64).reshape(-1))
    matrix = torch.zeros(len(chosen), num_classes)
    for row, y in enumerate(chosen):
        matrix[row, list(y) if isinstance(y, (list, tuple)) else [y]] = 1
    return matrix


def load_images(
    files: Sequence[Path] | Records,
    labels: Sequence[Label],
    train_idx: list[int],
    val_idx: list[int],
    classes: list[str],
    *,
    where: str,
    image_size: tuple[int, int],
    channels: int,
    cache_dir: Path | None,
    max_memory_mb: float,
    workers: int | None = None,
    decode_device: str | None = None,
    special: list[str] | None = None,
    test_idx: list[int] | None = None,
) -> DataSplits:
    """Decode ``files`` (or records; held, or streamed when larger than ``max_memory_mb``
    decoded) into the splits the index lists name. A label is a class index, or a list of them
    (multi-label). ``special`` names files already known to be unreadable; ``where`` names the
    data in messages."""
    import torch

    special = list(special or [])
    streamed = len(files) * channels * image_size[0] * image_size[1] > max_memory_mb * 2**20
    if cache_dir is not None:
        cache_dir = usable_cache(cache_dir)
    if decode_device is not None and streamed and cache_dir is None:
        decode_device = None  # nowhere to keep what it decodes: loader workers decode
    cache = DecodedCache(
        files,
        image_size,
        channels,
        cache_dir,
        keep_pixels=not streamed,
        decode_device=decode_device,
    )
    if streamed:
        decoded = 0
        if decode_device is not None:  # the whole folder into the cache now, in batches
            decoded, _ = cache.decode_missing(workers or default_workers())
        train = StreamedFolder(cache, train_idx, [labels[i] for i in train_idx])
        train.decoded[0] += decoded  # counted in the first epoch, as set-up decoding is
        val = StreamedFolder(cache, val_idx, [labels[i] for i in val_idx]) if val_idx else None
        test = StreamedFolder(cache, test_idx, [labels[i] for i in test_idx]) if test_idx else None
        return DataSplits(train, val, classes, image_size, channels, skipped=special, test=test)

    _, errors = cache.decode_missing(workers or default_workers())
    status = np.array(cache.arrays()[1])  # a copy: gather() releases the cache's arrays
    skipped = [i for i in range(len(files)) if status[i] == UNREADABLE]
    for i in skipped:
        reason = errors.get(i, "unreadable when first decoded; the decoded cache remembers it")
        name = item_name(files, i)
        print(f"warning: skipped unreadable image {name} ({reason})", file=sys.stderr)

    def split(indices: list[int]) -> ImageTensors | None:
        keep = np.array([i for i in indices if status[i] == DECODED], dtype=np.int64)
        if len(keep) == 0:
            return None
        return ImageTensors(
            torch.from_numpy(cache.gather(keep)),
            label_tensor(labels, keep, len(classes)),
            paths=[item_name(files, i) for i in keep],
        )

    train = split(train_idx)
    if train is None:
        raise ZooError(f"no readable training images in {where}")
    return DataSplits(
        train,
        split(val_idx),
        classes,
        image_size,
        channels,
        skipped=special + [item_name(files, i) for i in skipped],
        test=split(test_idx) if test_idx else None,
    )
