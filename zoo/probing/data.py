"""The data a probe reads: ``--data`` resolved as ``zoo train`` resolves it (a dataset name or
an image folder, split by ``--seed`` and ``--val-split`` as a run with those settings would split
it), built once per probe size, and the digest that keys its features in the cache.

The digest is taken of what the backbone will see: every image (uint8, at the probe size) and
label of both splits, in order, and the class names. Any change to a file, to the split, or to
how a dataset decodes gives other features a new key, whatever the source of the data is.
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


class ProbeData:
    """``--data`` at each size a candidate asks for (built once per size), with its digest."""

    def __init__(self, settings: ProbeSettings) -> None:
        from zoo.plugins.components import resolve
        from zoo.train.config import data_spec

        self.settings = settings
        self.resolved = resolve("dataset", data_spec(settings.data))  # unknown names fail here
        self._splits: dict[tuple[int, int], DataSplits] = {}
        self._digests: dict[tuple[int, int], str] = {}

    def at(self, size: tuple[int, int]) -> DataSplits:
        """Both splits at ``size``; ZooError when the data cannot give a validation split."""
        from zoo.data.splits import DataSplits

        if size not in self._splits:
            s = self.settings
            splits = self.resolved.build(
                image_size=size, seed=s.seed, val_fraction=s.val_split, download=False
            )
            if not isinstance(splits, DataSplits):
                raise ZooError(
                    f"{self.resolved.label} returned {type(splits).__name__}, not DataSplits"
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
            self._digests[size] = data_digest(self.at(size))
        return self._digests[size]


def data_digest(splits: DataSplits) -> str:
    """A digest of the images and labels of both splits, in order, and the class names."""
    h = hashlib.sha256(json.dumps([DIGEST_FORMAT, list(splits.classes)]).encode())
    for part in (splits.train, splits.val):
        h.update(f"\0split {len(part)}\0".encode())
        _update(h, part)
    return h.hexdigest()


def _update(h: Any, split: Any) -> None:
    import numpy as np

    from zoo.data.splits import ImageTensors

    if isinstance(split, ImageTensors):
        h.update(np.ascontiguousarray(split.images.numpy()).data)
        h.update(split.labels.numpy().astype("<i8").tobytes())
        return
    for i in range(len(split)):  # streamed: read as the backbone will read it
        item = split[i]
        if item is None:
            h.update(b"\0unreadable\0")
            continue
        image, label = item
        h.update(np.ascontiguousarray(np.asarray(image)).data)
        h.update(int(label).to_bytes(8, "little", signed=True))
