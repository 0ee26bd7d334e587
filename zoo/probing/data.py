"""The data a probe reads: ``--data`` resolved as ``zoo train`` resolves it (any data source:
a dataset name, an image folder, a label table, a Hugging Face dataset, shards) and split by
``--seed`` and ``--val-split`` as a run with those settings would split it, built once per
probe size, and the digest that keys its features in the cache.

The digest is taken of what the backbone will see: every image (uint8, at the probe size) and
label of both splits, in order, and the class names. Any change to a file, to the split, or to
how a dataset decodes gives other features a new key; the same pixels give the same key whether
the data is held in memory or streamed.

Reading every image to take that digest costs as much as the decoding the cache saves, so the
facts a probe needs of the data (the digest, the channels, the class and image counts) are kept
in the feature cache under the source's stamp (``DataSource.stamp``: the files' names, sizes
and times, say): data whose stamp is unchanged is not read again, and a second probe of it
imports neither the data path nor torch. A source without a stamp is read every time.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    from zoo.data.splits import DataSplits
    from zoo.probing.settings import ProbeSettings

# Bumped when what the digest covers changes.
DIGEST_FORMAT = 1
CHUNK = 256  # images hashed at a time


@dataclass(frozen=True)
class DataFacts:
    """What a probe needs of the data at one size, short of its pixels."""

    digest: str  # of the pixels and labels (``data_digest``)
    in_chans: int
    classes: int
    train: int
    val: int
    multi_label: bool = False


class ProbeData:
    """``--data`` at each size a candidate asks for (built once per size), with its digest."""

    def __init__(self, settings: ProbeSettings) -> None:
        from zoo.data.source import normalize_data, resolve_data

        self.settings = settings
        self.resolved = resolve_data(normalize_data(settings.data))  # unknown names fail here
        self._splits: dict[tuple[int, int], DataSplits] = {}
        self._facts: dict[tuple[int, int], DataFacts] = {}

    def facts(self, size: tuple[int, int]) -> DataFacts:
        """The data's facts at ``size``: from the feature cache when the source's stamp is
        the one they were noted under, else read from the data (and noted)."""
        from zoo.probing import cache

        if size in self._facts:
            return self._facts[size]
        name = self._facts_name(size)
        known = cache.load_entry(name) if name is not None else None
        try:
            found = DataFacts(**known) if isinstance(known, dict) else None
        except TypeError:
            found = None  # another layout: read again
        if found is None:
            splits = self.at(size)
            found = DataFacts(
                digest=data_digest(splits, self.settings.workers),
                in_chans=splits.in_chans,
                classes=len(splits.classes),
                train=len(splits.train),
                val=len(splits.val),
                multi_label=splits.multi_label,
            )
            if name is not None:
                cache.save_entry(name, asdict(found))
        self._facts[size] = found
        return found

    @functools.cached_property
    def stamp(self) -> str | None:
        """The source's stamp of the data (None: it has none), taken once per probe."""
        from zoo.data.source import stamp_of

        return stamp_of(self.resolved)

    def _facts_name(self, size: tuple[int, int]) -> str | None:
        """The cache entry of the facts at ``size`` (None: the source has no stamp)."""
        from importlib.metadata import version

        from zoo import __version__
        from zoo.data.decoder import DECODER

        stamp = self.stamp
        if stamp is None:
            return None
        s = self.settings
        # What else changes the pixels: the decoder, and the resizing of zoo and torch.
        made = [DIGEST_FORMAT, DECODER, __version__, version("torch")]
        text = json.dumps([made, stamp, s.seed, s.val_split, list(size)])
        return "data-" + hashlib.sha256(text.encode()).hexdigest()[:32]

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
