"""What dataset factories return (``DataSplits`` of ``ImageTensors`` or streamed datasets), and
the helpers they share: seeded stratified splits, uint8 resizing, channel statistics.

A split is either decoded into memory (``ImageTensors``: uint8 ``[N, C, H, W]`` plus labels,
indexed batch by batch on the training device) or streamed: a map-style torch ``Dataset`` whose
items are ``(uint8 [C, H, W], label)`` (None for an unreadable file), or an iterable stream of
them with a defined epoch length. What a split may expose beyond its items
(``zoo.plugins.hookspecs.SPLIT_EXPOSES``) is read here, by ``split_labels`` and its siblings.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import ZooError

if TYPE_CHECKING:
    import torch

# Pixels converted to int32 at a time by channel_stats: 32 MiB.
STATS_CHUNK_BYTES = 32 * 2**20


@dataclass
class ImageTensors:
    """A split decoded into memory: uint8 images ``[N, C, H, W]`` and their labels: int64
    ``[N]`` class indices, or for multi-label data a ``{0, 1}`` matrix ``[N, K]``.

    ``paths``, when given, names the file each image was decoded from (image folders), so
    evaluation can point at the files it got wrong; built-in datasets leave it None.
    """

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str] | None = None

    def __post_init__(self) -> None:
        import torch

        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N,C,H,W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        n = self.images.shape[0]
        if self.labels.ndim not in (1, 2) or self.labels.shape[0] != n:
            raise ValueError("labels must be int64 [N] (or {0,1} [N, K]) matching the images")
        if self.paths is not None and len(self.paths) != n:
            raise ValueError("paths must name one file per image")
        self.labels = self.labels.long() if self.labels.ndim == 1 else self.labels

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class DataSplits:
    """What a dataset factory returns: the splits, class names and image geometry.

    ``val`` may be None (no validation), as may ``test`` (a held-out split that only
    ``zoo eval --split test`` reads). ``mean``/``std`` are per-channel in ``[0, 1]`` units;
    left as None, zoo computes them from the training images. ``skipped`` names the files
    found unreadable while loading.
    """

    train: Any
    val: Any
    classes: list[str]
    image_size: tuple[int, int]
    in_chans: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    skipped: list[str] = field(default_factory=list)
    test: Any = None

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise ZooError(f"classification needs at least two classes, got {self.classes}")

    @property
    def multi_label(self) -> bool:
        """Whether any split holds label sets rather than one class per image."""
        return any(is_multi_label(s) for s in (self.train, self.val, self.test) if s is not None)


def is_stream(split: Any) -> bool:
    """An iterable stream (read in order, its ``len()`` the epoch length), not indexable."""
    from torch.utils.data import IterableDataset

    return isinstance(split, IterableDataset)


def split_labels(split: Any) -> Any:
    """A split's labels (an ``ImageTensors``' tensor, or what a streamed split exposes as
    ``labels``), or None when it exposes none."""
    if isinstance(split, ImageTensors):
        return split.labels
    return getattr(split, "labels", None)


def label_tensor(labels: Any) -> torch.Tensor:
    """Labels as one tensor: class indices and ``[N, K]`` label vectors as they are, label
    sets (lists of class indices, as streamed splits hold them) as int64 ``[N, M]`` padded
    with -1, the form the multi-label task encodes (``zoo.labeling.task``)."""
    import torch

    if isinstance(labels, torch.Tensor):
        return labels
    if any(isinstance(y, (list, tuple)) for y in labels):
        sets = [list(y) if isinstance(y, (list, tuple)) else [y] for y in labels]
        width = max(1, *(len(s) for s in sets))
        return torch.tensor([s + [-1] * (width - len(s)) for s in sets], dtype=torch.int64)
    return torch.as_tensor(labels)


def is_multi_label(split: Any) -> bool:
    """Whether a split's labels are label sets (lists of class indices, or a ``[N, K]``
    matrix), from what it exposes."""
    labels = split_labels(split)
    if labels is None:
        return bool(getattr(split, "multi_label", False))
    if getattr(labels, "ndim", 1) == 2:
        return True
    return any(isinstance(y, (list, tuple)) for y in labels)


def split_paths(split: Any) -> list[str] | None:
    """The file behind each item, in split order; None when the split names none (built-in
    datasets: their items are named by index)."""
    from torch.utils.data import ConcatDataset

    if isinstance(split, ImageTensors):
        return split.paths
    if isinstance(split, ConcatDataset):
        parts = [split_paths(d) for d in split.datasets]
        return None if any(p is None for p in parts) else [f for p in parts for f in p or []]
    paths = getattr(split, "paths", None)
    return None if paths is None else [str(p) for p in paths]


def split_unreadable(split: Any) -> list[Any]:
    """The items a streamed split skipped as unreadable so far (none if it cannot say)."""
    found = getattr(split, "unreadable", None)
    return list(found()) if callable(found) else []


def split_decoded(split: Any) -> int | None:
    """Images a split decoded so far rather than read from a cache (None: it does not count)."""
    counter = getattr(split, "decoded", None)
    return int(counter.sum()) if counter is not None else None


def resize_tensors(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 ``[N, C, H, W]`` images (antialiased bilinear), in chunks to bound memory."""
    import torch
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 1024):
        chunk = images[start : start + 1024].float()
        resized = F.interpolate(
            chunk, size=size, mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + 1024] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def stratified_split(
    labels: Sequence[Any], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices of a seeded, per-class validation split (each class keeps one training item).
    A label set (multi-label) counts in the class of its first label."""
    if not 0 <= fraction < 1:
        raise ZooError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        if isinstance(y, (list, tuple)):
            y = y[0] if y else -1
        by_class.setdefault(int(y), []).append(i)
    train, val = [], []
    for y in sorted(by_class):
        idx = np.array(by_class[y])
        rng.shuffle(idx)
        n_val = min(len(idx) - 1, round(len(idx) * fraction)) if fraction > 0 else 0
        if fraction > 0 and len(idx) > 1:
            n_val = max(n_val, 1)
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return sorted(train), sorted(val)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``[N, C, H, W]`` images, in ``[0, 1]`` units.

    Sums of the integer pixels and of their squares, exact in int64, over chunks of about
    ``STATS_CHUNK_BYTES`` of int32 pixels: the statistics of a folder held in memory cost no
    more memory than a batch (converting 2,048 images at a time to float64 cost 390 MiB of
    peak at 64 px and several GB at 224 px).
    """
    import torch

    n, c, h, w = images.shape
    per_image = max(1, c * h * w * 4)
    step = max(1, STATS_CHUNK_BYTES // per_image)
    total = torch.zeros(c, dtype=torch.int64)
    squares = torch.zeros(c, dtype=torch.int64)
    for start in range(0, n, step):
        chunk = images[start : start + step].to(torch.int32)
        total += chunk.sum(dim=(0, 2, 3))  # integer sums are int64
        squares += chunk.mul_(chunk).sum(dim=(0, 2, 3))
    count = n * h * w
    means, stds = [], []
    for s, q in zip(total.tolist(), squares.tolist(), strict=True):
        # count * var * 255^2 * count = count * sum(x^2) - sum(x)^2, exact in Python integers.
        spread = max(count * q - s * s, 0)
        means.append(s / (255 * count))
        stds.append(max(math.sqrt(spread) / (255 * count), 1e-3))
    return tuple(round(v, 6) for v in means), tuple(round(v, 6) for v in stds)


def default_workers() -> int:
    """Decode threads or loader workers: the machine's cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 2))
