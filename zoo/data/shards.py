"""WebDataset shards (``--data wds:DIR_OR_URL``), streamed through the ``webdataset`` library.

A folder (or a URL folder with a ``sizes.json``) holds ``train-*.tar`` and ``val-*.tar`` (or
``validation-*``, and ``test-*``); a pattern (``wds:URL/train-{000000..000127}.tar``, braces as
webdataset expands them) names training shards alone. A sample is an image member
(``.jpg/.jpeg/.png/.webp``) and a label member (``.cls``: a class index; ``.txt``: a class name,
or several separated by spaces, multi-label; ``.json``: an index, a name or a list). Class names
come from ``classes.txt`` (one a line) or ``classes.json`` beside the shards, else the labels'
integers. ``sizes.json`` (shard name -> samples, as ``zoo shard`` writes it) gives the epoch
length; without it the shards are counted once, by reading them.

Every epoch orders the shards from ``(seed, epoch)``, then ``split_by_node`` and
``split_by_worker`` give each process and loader worker its own, and a shuffle buffer mixes
their samples: each sample is read once per epoch over all processes, and ``--resume`` at an
epoch boundary reads what an uninterrupted run would. A corrupt member is skipped and counted.
"""

from __future__ import annotations

import glob
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset

from zoo.data.splits import DataSplits
from zoo.errors import ZooError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
LABEL_EXTS = ("cls", "txt", "json")
PREFIXES = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}


def _wds() -> Any:
    try:
        import webdataset
    except ImportError:
        raise ZooError(
            "wds: reading WebDataset shards needs the webdataset library: pip install 'zoo[data]'"
        ) from None
    return webdataset


def is_remote(location: str) -> bool:
    return "://" in location


def read_text(url: str) -> str | None:
    """A small file beside the shards (``classes.txt``, ``sizes.json``), or None if absent."""
    if not is_remote(url):
        path = Path(url)
        return path.read_text() if path.is_file() else None
    if url.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.read().decode()
        except (urllib.error.URLError, OSError):
            return None
    try:  # s3://, gs://: through webdataset's gopen (the aws and gsutil commands)
        with _wds().gopen(url, "rb") as f:
            data = f.read()
        return data.decode() if data else None
    except Exception:  # the command's failure: the file is not there
        return None


@dataclass
class ShardSet:
    """The shards of each split, their sizes where known, the class names, and the base."""

    base: str
    splits: dict[str, list[str]]
    sizes: dict[str, int] = field(default_factory=dict)
    classes: list[str] | None = None


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def find_shards(location: str) -> ShardSet:
    """The shards ``location`` names (see the module), or one line saying why there are none."""
    wds = _wds()
    pattern = location.endswith(".tar") or "{" in location or "*" in location
    base = location.rsplit("/", 1)[0] if pattern else location.rstrip("/")
    sizes_text = read_text(_join(base, "sizes.json"))
    try:
        sizes = {str(k): int(v) for k, v in json.loads(sizes_text).items()} if sizes_text else {}
    except (ValueError, AttributeError):
        raise ZooError(f"wds:{location}: sizes.json is not a JSON object of counts") from None
    if pattern:
        urls = [u for url in wds.shardlists.expand_urls(location) for u in _glob(url)]
        if not is_remote(location):
            missing = [u for u in urls if not Path(u).is_file()]
            urls = [u for u in urls if Path(u).is_file()]
            if missing and not urls:
                urls = []
        splits = {"train": urls}
    else:
        if is_remote(location):
            names = sorted(sizes)
            if not names:
                raise ZooError(
                    f"wds:{location}: a URL folder needs a sizes.json listing its shards; give a "
                    "pattern instead: wds:URL/train-{000000..000127}.tar"
                )
        else:
            root = Path(location)
            if not root.is_dir():
                raise ZooError(f"wds:{location} is neither a folder of shards nor a pattern")
            names = sorted(p.name for p in root.glob("*.tar"))
        splits = {
            split: [_join(base, n) for n in names if n.split("-")[0].lower() in prefixes]
            for split, prefixes in PREFIXES.items()
        }
    if not splits.get("train"):
        raise ZooError(
            f"no shard matches wds:{location}"
            + ("" if pattern else " (expected train-*.tar, and val-*.tar or validation-*.tar)")
        )
    classes = None
    text = read_text(_join(base, "classes.txt"))
    if text is not None:
        classes = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        text = read_text(_join(base, "classes.json"))
        if text is not None:
            classes = [str(c) for c in json.loads(text)]
    return ShardSet(base, {k: v for k, v in splits.items() if v}, sizes, classes)


def _glob(url: str) -> list[str]:
    if is_remote(url) or "*" not in url:
        return [url]
    return sorted(glob.glob(url))


def _label(sample: dict[str, Any], names: dict[str, int] | None) -> Any:
    """A sample's label: a class index, or a sorted list of them (several labels)."""
    for ext in LABEL_EXTS:
        if ext in sample:
            raw = sample[ext]
            text = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
            value: Any = json.loads(text) if ext == "json" else text.strip()
            if ext == "txt":
                value = value.split() if len(value.split()) > 1 else value
            return _index(value, names)
    raise ValueError(f"no label member ({', '.join('.' + e for e in LABEL_EXTS)})")


def _index(value: Any, names: dict[str, int] | None) -> Any:
    if isinstance(value, list):
        return sorted({_index(v, names) for v in value})
    text = str(value).strip()
    if names is not None and text in names:
        return names[text]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"label {text!r} is not one of the classes") from None


def _image(sample: dict[str, Any]) -> bytes:
    for ext in IMAGE_EXTS:
        if ext in sample:
            return sample[ext]
    raise ValueError(f"no image member ({', '.join('.' + e for e in IMAGE_EXTS)})")


def samples(urls: Any, handler: Any = None) -> Any:
    """webdataset's samples of the shards ``urls`` yields (``{"url": ...}`` items), each shard
    closed as soon as it is read or the reader stops (webdataset's own opener leaves that to
    the garbage collector, which warns)."""
    wds = _wds()
    handler = handler or wds.reraise_exception

    def opened(items: Any) -> Any:
        for item in items:
            try:
                stream = wds.gopen(item["url"], "rb")
            except Exception as exc:  # a missing shard, a failed download
                if handler(exc):
                    continue
                raise
            try:
                yield {**item, "stream": stream}
            finally:
                stream.close()

    expanded = wds.tariterators.tar_file_expander(opened(urls), handler=handler)
    return wds.tariterators.group_by_keys(expanded, handler=handler)


def _tokens(sample: dict[str, Any]) -> list[str]:
    """A sample's label member as written: its class names or indices."""
    for ext in LABEL_EXTS:
        if ext in sample:
            raw = sample[ext]
            text = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
            value: Any = json.loads(text) if ext == "json" else text.split() or [""]
            return [str(v).strip() for v in (value if isinstance(value, list) else [value])]
    return []


def count(urls: list[str]) -> tuple[int, set[str]]:
    """Samples in ``urls`` and the labels they name, by reading them once."""
    wds = _wds()
    n, seen = 0, set()
    for sample in wds.DataPipeline(wds.SimpleShardList(urls), samples):
        n += 1
        seen.update(_tokens(sample))
    return n, seen


def classes_from(labels: set[str]) -> list[str]:
    """Class names from the labels the shards hold: ``0..max`` when they are all indices,
    else the names, sorted."""
    if labels and all(t.lstrip("-").isdigit() for t in labels):
        return [str(i) for i in range(max(int(t) for t in labels) + 1)]
    return sorted(labels)


class ShardStream(IterableDataset):
    """One split's shards as a zoo stream: ``(uint8 [C, H, W], label)`` items, ``len()`` the
    split's samples, ordered by ``set_epoch`` (see the module)."""

    def __init__(
        self,
        urls: list[str],
        length: int,
        classes: list[str],
        size: tuple[int, int],
        channels: int,
        seed: int,
        train: bool,
        buffer: int,
    ) -> None:
        import torch

        self.urls, self.length, self.classes = urls, length, classes
        self.size, self.channels, self.seed, self.train, self.buffer = (
            size,
            channels,
            seed,
            train,
            buffer,
        )
        self.epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.bad = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch[0] = epoch

    def unreadable(self) -> list[str]:
        """One entry per sample skipped so far (a corrupt member, a missing label)."""
        return ["<corrupt sample>"] * int(self.bad[0])

    def pipeline(self) -> Any:
        """webdataset's pipeline for this epoch, in this process and worker."""
        wds = _wds()
        epoch = int(self.epoch[0])
        urls = list(self.urls)
        if self.train:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(urls)
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        stages = [
            wds.SimpleShardList(urls),
            wds.split_by_node,
            wds.split_by_worker,
            lambda items: samples(items, self._skip),
        ]
        if self.train and self.buffer > 1:
            rng = random.Random(hash((self.seed, epoch, rank, worker)))
            stages.append(wds.shuffle(self.buffer, min(self.buffer, 100), rng=rng))
        return wds.DataPipeline(*stages)

    def _skip(self, exc: Exception) -> bool:
        import sys

        self.bad[0] += 1
        print(f"warning: skipped a corrupt shard member ({exc})", file=sys.stderr)
        return True

    def __iter__(self) -> Any:
        import sys

        import torch

        from zoo.data.decoder import decode_image

        names = {c: i for i, c in enumerate(self.classes)}
        for sample in self.pipeline():
            key = sample.get("__key__", "?")
            try:
                label = _label(sample, names)
                pixels = decode_image(_image(sample), self.size, self.channels, str(key))
            except Exception as exc:  # PIL's many types, a bad label: the sample is skipped
                self.bad[0] += 1
                print(f"warning: skipped unreadable sample {key} ({exc})", file=sys.stderr)
                continue
            yield torch.from_numpy(pixels), label


def load_shards(
    location: str,
    *,
    image_size: tuple[int, int] | None,
    channels: int,
    seed: int,
    shuffle: int,
) -> DataSplits:
    """The shards' splits as streams (see the ``wds`` dataset)."""
    if channels not in (1, 3):
        raise ZooError(f"wds: channels must be 1 or 3, got {channels}")
    found = find_shards(location)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > len(found.splits["train"]):
        raise ZooError(
            f"wds:{location}: {len(found.splits['train'])} training shards cannot be shared by "
            f"{world} processes; write more shards (zoo shard --shard-size) or use fewer processes"
        )
    lengths: dict[str, int] = {}
    seen: set[str] = set()
    for split, urls in found.splits.items():
        known = [found.sizes.get(u.rsplit("/", 1)[-1]) for u in urls]
        if all(k is not None for k in known) and found.classes:
            lengths[split] = sum(int(k) for k in known)  # type: ignore[arg-type]
        else:
            lengths[split], labels = count(urls)
            seen |= labels
    classes = found.classes or classes_from(seen)
    size = image_size or proposed_size({"url": location}, (224, 224)) or (224, 224)

    def stream(split: str, train: bool) -> ShardStream | None:
        urls = found.splits.get(split)
        if not urls:
            return None
        return ShardStream(urls, lengths[split], classes, size, channels, seed, train, shuffle)

    return DataSplits(
        stream("train", True),
        stream("val", False),
        classes,
        size,
        channels,
        test=stream("test", False),
    )


def proposed_size(params: dict[str, Any], cap: tuple[int, int]) -> tuple[int, int] | None:
    """The median size of the first 64 training images, from their headers."""
    from zoo.data.decoder import typical_size_of

    try:
        found = find_shards(str(params["url"]))
    except ZooError:
        return None  # loading them says what is wrong
    wds = _wds()
    images: list[bytes] = []
    pipeline = wds.DataPipeline(wds.SimpleShardList(found.splits["train"][:1]), samples)
    try:
        for sample in pipeline:
            try:
                images.append(_image(sample))
            except ValueError:
                continue
            if len(images) >= 64:
                break
    except Exception:  # an unreadable first shard: training says so
        return None
    return typical_size_of(images, cap)


def default_split(params: dict[str, Any]) -> str:
    """Shards with a val split are judged on it; a pattern (training shards alone) whole."""
    try:
        found = find_shards(str(params["url"]))
    except ZooError:
        return "val"
    return "val" if "val" in found.splits else "all"
