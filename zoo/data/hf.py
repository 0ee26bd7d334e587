"""Hugging Face datasets (``--data hf:ORG/NAME`` or ``hf:LOCAL_DIR``), through
``datasets.load_dataset``: its cache, ``HF_HOME``, ``HF_HUB_OFFLINE`` and ``HF_DATASETS_OFFLINE``
as that library has them. The image column (an ``Image`` feature) and the label column (a
``ClassLabel``, or ``Sequence(ClassLabel)`` for multi-label) are found from the features. The
dataset's own splits are used; the encoded images go through zoo's decoder and decoded cache
(held in memory when they fit, else streamed from the cache), or with ``streaming=true`` are read
as a stream, each process and loader worker taking its own share.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset

from zoo.data.splits import DataSplits, stratified_split
from zoo.errors import ZooError

VAL_NAMES = ("validation", "valid", "val", "dev")


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ZooError(
            "hf: reading Hugging Face datasets needs the datasets library: pip install 'zoo[data]'"
        ) from None
    return datasets


def open_dataset(name: str, config: str | None, revision: str | None, streaming: bool) -> Any:
    """``load_dataset``'s DatasetDict (or IterableDatasetDict), or one line saying why not."""
    datasets = _datasets()
    try:
        found = datasets.load_dataset(name, name=config, revision=revision, streaming=streaming)
    except Exception as exc:  # datasets raises many types: not found, offline, bad files
        snapshot = _hub_snapshot(name, revision)
        if snapshot is None:
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise ZooError(
                f"hf:{name}: cannot load the dataset ({type(exc).__name__}: {text[:300]})"
            ) from None
        found = open_dataset(snapshot, config, None, streaming)
    if not isinstance(found, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ZooError(f"hf:{name}: load_dataset returned no splits")
    return found


def _hub_snapshot(name: str, revision: str | None) -> str | None:
    """The files of Hub dataset ``name`` in the Hugging Face cache (``HF_HUB_CACHE``), as
    huggingface_hub downloaded them, or None. Offline, datasets only knows the datasets it
    prepared itself; a repository already in the Hub cache is read from there."""
    if Path(name).exists() or name.count("/") != 1:
        return None
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            name, repo_type="dataset", revision=revision, local_files_only=True
        )
    except Exception:  # not in the cache (huggingface_hub's LocalEntryNotFoundError and kin)
        return None


def _pick_splits(
    found: Any, name: str, train: str | None, val: str | None, test: str | None
) -> tuple[str, str | None, str | None]:
    names = list(found)
    for given in (train, val, test):
        if given is not None and given not in names:
            raise ZooError(f"hf:{name} has no split {given!r} (its splits: {', '.join(names)})")
    train = train or ("train" if "train" in names else None)
    if train is None:
        raise ZooError(
            f"hf:{name} has no train split (its splits: {', '.join(names)}); name one: train=NAME"
        )
    val = val or next((n for n in VAL_NAMES if n in names), None)
    test = test or ("test" if "test" in names else None)
    return train, val, test


def columns(features: Any, name: str, image: str | None, label: str | None) -> tuple[str, str, Any]:
    """The image column, the label column and its feature (found by type when not given)."""
    datasets = _datasets()

    def is_label(f: Any) -> bool:
        inner = getattr(f, "feature", None)
        return isinstance(f, datasets.ClassLabel) or isinstance(inner, datasets.ClassLabel)

    if image is None:
        image = next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
    if image is None or image not in features:
        raise ZooError(
            f"hf:{name} has no image column{'' if image is None else f' {image!r}'} "
            f"(its columns: {', '.join(features)}); name one: image=COLUMN"
        )
    if label is None:
        label = next((c for c, f in features.items() if is_label(f)), None)
        if label is None:
            label = next((c for c in features if c.lower() in ("label", "labels")), None)
    if label is None or label not in features:
        raise ZooError(
            f"hf:{name} has no label column{'' if label is None else f' {label!r}'} "
            f"(its columns: {', '.join(features)}); name one: label=COLUMN"
        )
    return image, label, features[label]


def class_labels(feature: Any, values: list[Any], name: str) -> tuple[list[Any], list[str]]:
    """Labels as class indices (lists of them for ``Sequence(ClassLabel)``) and the names."""
    datasets = _datasets()
    inner = getattr(feature, "feature", None)
    if isinstance(feature, datasets.ClassLabel):
        return [int(v) for v in values], list(feature.names)
    if isinstance(inner, datasets.ClassLabel):
        return [sorted({int(x) for x in v}) for v in values], list(inner.names)
    from zoo.data.table import parse_labels

    return parse_labels(values, None, Path(f"hf:{name}"))


class Records:
    """A dataset's encoded images, read from its Arrow table (the decoded cache's ``Records``):
    the bytes, or the file a local imagefolder names."""

    def __init__(self, dataset: Any, column: str, where: str) -> None:
        datasets = _datasets()
        self.dataset = dataset.cast_column(column, datasets.Image(decode=False))
        self.column, self.where = column, where

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> bytes | Path:
        cell = self.dataset[int(index)][self.column] or {}
        data = cell.get("bytes")
        if data:
            return bytes(data)
        return Path(cell.get("path") or "")

    def name(self, index: int) -> str:
        return f"{self.where}#{index}"

    def stamp(self) -> str:
        return str(getattr(self.dataset, "_fingerprint", "")) or self.where


def load_hf(
    name: str,
    *,
    config: str | None,
    image: str | None,
    label: str | None,
    revision: str | None,
    train: str | None,
    val: str | None,
    test: str | None,
    streaming: bool,
    image_size: tuple[int, int] | None,
    channels: int,
    val_fraction: float,
    seed: int,
    cache_dir: Path | None,
    max_memory_mb: float,
    workers: int | None,
) -> DataSplits:
    """A Hugging Face dataset's splits (see the ``hf`` dataset)."""
    if channels not in (1, 3):
        raise ZooError(f"hf: channels must be 1 or 3, got {channels}")
    found = open_dataset(name, config, revision, streaming)
    train, val, test = _pick_splits(found, name, train, val, test)
    features = found[train].features
    if features is None:
        raise ZooError(f"hf:{name}: the dataset does not describe its columns")
    image_col, label_col, feature = columns(features, name, image, label)
    if streaming:
        return _streamed(
            found, name, train, val, test, image_col, label_col, feature, image_size, channels, seed
        )
    datasets = _datasets()
    parts = [found[train]] + [found[s] for s in (val, test) if s is not None]
    joined = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    labels, classes = class_labels(feature, joined[label_col], name)
    sizes = [len(p) for p in parts]
    train_idx = list(range(sizes[0]))
    rest = iter(range(sizes[0], sum(sizes)))
    val_idx = [next(rest) for _ in range(sizes[1])] if val is not None else []
    test_idx = list(rest)
    if val is None:  # --val-split holds out a stratified part of train
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    records = Records(joined, image_col, f"hf:{name}")
    from zoo.data.decoder import typical_size_of
    from zoo.data.loading import load_images

    size = image_size or typical_size_of(
        [records[i] for i in train_idx[:: max(1, len(train_idx) // 64)]], (224, 224)
    )
    return load_images(
        records,
        labels,
        train_idx,
        val_idx,
        classes,
        where=f"hf:{name}",
        image_size=size or (224, 224),
        channels=channels,
        cache_dir=cache_dir,
        max_memory_mb=max_memory_mb,
        workers=workers,
        test_idx=test_idx,
    )


def proposed_size(params: dict[str, Any], cap: tuple[int, int]) -> tuple[int, int] | None:
    """The median size of up to 64 training images, from their headers."""
    from zoo.data.decoder import typical_size_of

    try:
        found = open_dataset(
            str(params["name"]),
            params.get("config"),
            params.get("revision"),
            bool(params.get("streaming", False)),
        )
        train, _, _ = _pick_splits(found, str(params["name"]), params.get("train"), None, None)
        image_col, _, _ = columns(
            found[train].features, str(params["name"]), params.get("image"), params.get("label")
        )
    except ZooError:
        return None  # loading it says what is wrong
    datasets = _datasets()
    split = found[train].cast_column(image_col, datasets.Image(decode=False))
    if params.get("streaming"):
        rows = list(itertools.islice(iter(split), 64))
    else:
        rows = [split[i] for i in range(0, len(split), max(1, len(split) // 64))]
    sources = [r[image_col].get("bytes") or Path(r[image_col].get("path") or "") for r in rows]
    return typical_size_of(sources, cap)


class HFStream(IterableDataset):
    """A split of a streamed (``streaming=true``) dataset as a zoo stream: shuffled per
    ``(seed, epoch)`` in a buffer, shared over processes (``split_dataset_by_node``) and loader
    workers (datasets gives each worker its own shards), decoded by zoo's decoder."""

    def __init__(
        self,
        split: Any,
        image: str,
        label: str,
        feature: Any,
        size: tuple[int, int],
        channels: int,
        seed: int,
        train: bool,
        length: int,
        classes: int,
    ) -> None:
        import torch

        self.split, self.image, self.label, self.feature = split, image, label, feature
        self.size, self.channels, self.seed, self.train = size, channels, seed, train
        self.length, self.classes = length, classes
        self.epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch[0] = epoch

    def __iter__(self) -> Any:
        import os

        import torch
        from datasets.distributed import split_dataset_by_node

        from zoo.data.decoder import decode_image

        datasets = _datasets()
        split = self.split.cast_column(self.image, datasets.Image(decode=False))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            split = split_dataset_by_node(split, int(os.environ.get("RANK", "0")), world)
        if self.train:
            split = split.shuffle(seed=self.seed * 1_000_003 + int(self.epoch[0]), buffer_size=1000)
        for row in split:
            cell = row[self.image] or {}
            source = cell.get("bytes") or Path(cell.get("path") or "")
            try:
                pixels = decode_image(source, self.size, self.channels, cell.get("path"))
            except Exception:  # a corrupt record: skipped
                continue
            y = row[self.label]
            yield torch.from_numpy(pixels), (sorted(y) if isinstance(y, list) else int(y))


def _streamed(
    found: Any,
    name: str,
    train: str,
    val: str | None,
    test: str | None,
    image_col: str,
    label_col: str,
    feature: Any,
    image_size: tuple[int, int] | None,
    channels: int,
    seed: int,
) -> DataSplits:
    datasets = _datasets()
    inner = getattr(feature, "feature", None)
    names = (
        feature.names if isinstance(feature, datasets.ClassLabel) else getattr(inner, "names", None)
    )
    if not names:
        raise ZooError(f"hf:{name}: streaming needs a ClassLabel label column")
    size = (
        image_size
        or proposed_size(
            {
                "name": name,
                "streaming": True,
                "train": train,
                "image": image_col,
                "label": label_col,
            },
            (224, 224),
        )
        or (224, 224)
    )

    def stream(split: str | None, training: bool) -> Any:
        if split is None:
            return None
        info = found[split].info.splits
        length = info[split].num_examples if info and split in info else 0
        if not length:  # not in the dataset's card: counted once, reading the labels alone
            length = sum(1 for _ in found[split].select_columns([label_col]))
        return HFStream(
            found[split],
            image_col,
            label_col,
            feature,
            size,
            channels,
            seed,
            training,
            length,
            len(names),
        )

    return DataSplits(
        stream(train, True),
        stream(val, False),
        list(names),
        size,
        channels,
        test=stream(test, False),
    )
