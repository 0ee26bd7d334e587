"""Choosing a split and matching its labels to other classes: ``zoo eval`` judges a model on
data whose classes may be ordered differently (or be fewer), and ``--val-data`` validates on
another source than the training data."""

from __future__ import annotations

from typing import Any

import torch

from zoo.data.splits import DataSplits, ImageTensors, is_stream, split_labels, split_paths
from zoo.errors import ZooError


def pick_split(splits: DataSplits, split: str, data: str) -> Any:
    """The named split; ``all`` joins train and val."""
    parts = {
        "train": [splits.train],
        "val": [splits.val],
        "test": [splits.test],
        "all": [splits.train, splits.val],
    }
    chosen = [p for p in parts[split] if p is not None and (is_stream(p) or len(p) > 0)]
    if not chosen:
        hint = {
            "val": " (no images were held out); use --split train or all",
            "test": "; use --split val, train or all",
        }
        raise ZooError(f"{data} has no {split} split" + hint.get(split, ""))
    if len(chosen) == 1:
        return chosen[0]
    if all(isinstance(p, ImageTensors) for p in chosen):
        paths = [p.paths for p in chosen]
        return ImageTensors(
            torch.cat([p.images for p in chosen]),
            torch.cat([p.labels for p in chosen]),
            None if None in paths else [f for p in paths for f in p],
        )
    if any(isinstance(p, ImageTensors) for p in chosen):
        raise ZooError(f"{data}: cannot join an in-memory split with a streamed one")
    if any(is_stream(p) for p in chosen):
        return torch.utils.data.ChainDataset(chosen)
    return torch.utils.data.ConcatDataset(chosen)


def label_map(data_classes: list[str], model_classes: list[str], data: str) -> list[int] | None:
    """Data label -> model label; None when they already agree. Every class of the data must
    be one of the model's (a test set may lack some of the model's classes)."""
    if list(data_classes) == list(model_classes):
        return None
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ZooError(
            f"{data} has classes the model does not know: {shown} "
            f"(the model's: {', '.join(model_classes[:10])}"
            f"{' ...' if len(model_classes) > 10 else ''})"
        )
    return [model_classes.index(c) for c in data_classes]


def relabel(split: Any, mapping: list[int] | None) -> Any:
    if mapping is None:
        return split
    if isinstance(split, ImageTensors):
        return ImageTensors(split.images, torch.tensor(mapping)[split.labels], split.paths)
    if is_stream(split):
        return RelabeledStream(split, mapping)
    return Relabeled(split, mapping)


class RelabeledStream(torch.utils.data.IterableDataset):
    """A stream whose labels are translated to the model's class indices."""

    def __init__(self, dataset: Any, mapping: list[int]) -> None:
        self.dataset, self.mapping = dataset, mapping

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def __iter__(self) -> Any:
        for item in self.dataset:
            yield None if item is None else (item[0], self.mapping[int(item[1])])


class Relabeled(torch.utils.data.Dataset):
    """A streamed split whose labels are translated to the model's class indices."""

    def __init__(self, dataset: Any, mapping: list[int]) -> None:
        self.dataset, self.mapping = dataset, mapping
        labels = split_labels(dataset)
        self.labels = None if labels is None else [mapping[int(y)] for y in labels]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int] | None:
        item = self.dataset[i]
        return None if item is None else (item[0], self.mapping[int(item[1])])

    @property
    def paths(self) -> list[str] | None:
        return split_paths(self.dataset)
