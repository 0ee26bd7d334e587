"""The data a probe reads: ``--data`` resolved as ``zoo train`` resolves it (any data source:
a dataset name, an image folder, a label table, a Hugging Face dataset, shards) and split by
``--seed`` and ``--val-split`` as a run with those settings would split it, built once per
probe size, and the digest that keys its features in the cache.

The digest is taken of what the backbone will see: every image (uint8, at the probe size) and
label of both splits, in order, and the class names. Any change to a file, to the split, or to
how a dataset decodes gives other features a new key; the same pixels give the same key whether
the data is held in memory or streamed.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    from zoo.data.splits import DataSplits
    from zoo.probing.settings import ProbeSettings

# Bumped when what the digest covers changes.
DIGEST_FORMAT = 1
CHUNK = 256  # images hashed at a time


class ProbeData:
    """``--data`` at each size a candidate asks for (built once per size), with its digest."""

    def __init__(self, settings: ProbeSettings) -> None:
        from zoo.data.source import normalize_data, resolve_data

        self.settings = settings
        self.resolved = resolve_data(normalize_data(settings.data))  # unknown names fail here
        self._splits: dict[tuple[int, int], DataSplits] = {}
        self._digests: dict[tuple[int, int], str] = {}

    def at(self, size: tuple[int, int]) -> DataSplits:
        """Both splits at ``size``; ZooError when the data cannot give a validation split."""
        from zoo.data.source import build_splits

        if size not in self._splits:
            s = self.settings
            splits = build_splits(
                self.resolved, image_size=size, seed=s.seed, val_fraction=s.val_split
            )
            for name in ("train", "val"):
                part = getattr(splits, name)
                if part is None or len(part) == 0:
                    raise ZooError(
                        f"{s.data} has no {name} images to probe with (each class needs two "
                        "images or more, so that --val-split can hold some out)"
                    )
            if tuple(splits.image_size) != tuple(size):
                raise ZooError(
                    f"{s.data} gives {splits.image_size[0]}x{splits.image_size[1]} images, "
                    f"not the {size[0]}x{size[1]} asked for"
                )
            self._splits = {size: splits}  # one size held at a time: candidates come in order
        return self._splits[size]

    def digest(self, size: tuple[int, int]) -> str:
        if size not in self._digests:
            workers = self.settings.workers
            self._digests[size] = data_digest(self.at(size), workers)
        return self._digests[size]


def data_digest(splits: DataSplits, workers: int | None = None) -> str:
    """A digest of the images and labels of both splits, in order, and the class names (label
    sets as label vectors, the same whether held as a matrix or streamed as index lists)."""
    h = hashlib.sha256(json.dumps([DIGEST_FORMAT, list(splits.classes)]).encode())
    vectors = len(splits.classes) if splits.multi_label else None
    for part in (splits.train, splits.val):
        h.update(f"\0split {len(part)}\0".encode())
        _update(h, part, workers, vectors)
    return h.hexdigest()


def _update(h: Any, split: Any, workers: int | None, vectors: int | None = None) -> None:
    import numpy as np
    import torch

    from zoo.data.batches import make_batches
    from zoo.data.splits import ImageTensors, default_workers
    from zoo.labeling.task import MULTI, task_named

    if isinstance(split, ImageTensors):
        chunks: Any = (
            (split.images[i : i + CHUNK], split.labels[i : i + CHUNK])
            for i in range(0, len(split), CHUNK)
        )
    else:
        # Streamed: read as the backbone will read it, through the same loader workers (which
        # also decode a folder's images into its cache, for the extraction that follows).
        workers = default_workers() if workers is None else workers
        cpu = torch.device("cpu")
        chunks = make_batches(split, CHUNK, cpu, train=False, workers=workers, seed=0).epoch(0)
    for images, labels in chunks:  # the same bytes, held or streamed
        if vectors is not None:
            labels = task_named(MULTI).encode(labels, vectors)
        h.update(np.ascontiguousarray(images.numpy()).data)
        h.update(labels.numpy().astype("<i8").tobytes())
