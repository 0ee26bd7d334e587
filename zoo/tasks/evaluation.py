"""Evaluating a trained model: rebuild the data it is judged on, run it, and report.

Without ``--data`` the run's own validation split is rebuilt from the settings stored in the
weights (dataset, seed, validation fraction), so it holds exactly the images training held out.
Metrics come from the confusion matrix (``zoo.train.metrics.from_confusion``), which uses
scikit-learn's definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.data.splits import DataSplits, ImageTensors, resize_tensors
from zoo.errors import ZooError
from zoo.models.weights import ModelInfo

SPLITS = ("val", "train", "all")


@dataclass
class EvalData:
    """The images a model is evaluated on, with labels in the model's class order."""

    split: Any  # ImageTensors, or a map-style dataset of (uint8 [C, H, W], label) items
    data: str  # the dataset as given (name[:k=v] or path)
    split_name: str


def eval_data(info: ModelInfo, data: str | None, split: str | None, source: Path) -> EvalData:
    """Build the split of ``data`` (default: the run's own data) at the model's input size.

    ``split`` None: the validation split, except for an image folder given as ``data`` that
    has no ``train/`` or ``val/`` subfolders (a test set): all of it.
    """
    from zoo.data.folder import has_splits
    from zoo.plugins.components import resolve
    from zoo.plugins.specs import accepted_params
    from zoo.train.config import data_spec

    if split is not None and split not in SPLITS:
        raise ZooError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    config = info.config or {}
    own = data is None
    if own:
        data = config.get("data")
        if not data:
            raise ZooError(f"{source} records no training data; pass --data NAME|PATH")
    seed = int(config.get("seed", 0))
    val_fraction = float(config.get("val_split", 0.2))
    # The run's own data may be named as runs did before they recorded qualified names.
    resolved = resolve("dataset", data_spec(str(data)), prefer="zoo" if own else None)
    root = resolved.spec.params.get("root")
    if (
        split is None
        and not own
        and resolved.component.qualified == "zoo:folder"
        and isinstance(root, str)
        and not has_splits(Path(root))
    ):
        split, val_fraction = "all", 0.0  # a test folder: every image in it
    split = split or "val"
    accepted = accepted_params(resolved.factory) or []
    if "channels" in accepted and "channels" not in resolved.spec.params:
        # Image folders decode to RGB unless told; a greyscale model needs one channel.
        resolved = resolve("dataset", resolved.spec, channels=info.in_chans)
    splits = resolved.build(
        image_size=info.image_size, seed=seed, val_fraction=val_fraction, download=False
    )
    if not isinstance(splits, DataSplits):
        raise ZooError(f"{resolved.label} returned {type(splits).__name__}, not DataSplits")
    if splits.in_chans != info.in_chans:
        raise ZooError(
            f"{data} has {splits.in_chans}-channel images; the model takes {info.in_chans}"
        )
    mapping = _label_map(splits.classes, info.classes, str(data))
    chosen = _relabel(_pick(splits, split, str(data)), mapping)
    if tuple(splits.image_size) != tuple(info.image_size):
        if not isinstance(chosen, ImageTensors):
            raise ZooError(
                f"{data} gives {splits.image_size[0]}x{splits.image_size[1]} images; "
                f"the model takes {info.image_size[0]}x{info.image_size[1]}"
            )
        chosen = ImageTensors(
            resize_tensors(chosen.images, info.image_size), chosen.labels, chosen.paths
        )
    return EvalData(chosen, str(data), split)


def _pick(splits: DataSplits, split: str, data: str) -> Any:
    """The named split; ``all`` joins train and val."""
    parts = {"train": [splits.train], "val": [splits.val], "all": [splits.train, splits.val]}
    chosen = [p for p in parts[split] if p is not None and len(p) > 0]
    if not chosen:
        raise ZooError(
            f"{data} has no {split} split"
            + (" (no images were held out); use --split train or all" if split == "val" else "")
        )
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
    return torch.utils.data.ConcatDataset(chosen)


def _label_map(data_classes: list[str], model_classes: list[str], data: str) -> list[int] | None:
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


def _relabel(split: Any, mapping: list[int] | None) -> Any:
    if mapping is None:
        return split
    if isinstance(split, ImageTensors):
        return ImageTensors(split.images, torch.tensor(mapping)[split.labels], split.paths)
    return Relabeled(split, mapping)


class Relabeled(torch.utils.data.Dataset):
    """A streamed split whose labels are translated to the model's class indices."""

    def __init__(self, dataset: Any, mapping: list[int]) -> None:
        self.dataset, self.mapping = dataset, mapping
        labels = getattr(dataset, "labels", None)
        self.labels = None if labels is None else [mapping[int(y)] for y in labels]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int] | None:
        item = self.dataset[i]
        return None if item is None else (item[0], self.mapping[int(item[1])])

    @property
    def paths(self) -> list[str] | None:
        return split_paths(self.dataset)


def split_paths(split: Any) -> list[str] | None:
    """The file behind each item of a split, in split order; None when the data has no files
    (built-in datasets: their items are named by index)."""
    if isinstance(split, torch.utils.data.ConcatDataset):
        parts = [split_paths(d) for d in split.datasets]
        return None if any(p is None for p in parts) else [f for p in parts for f in p or []]
    paths = getattr(split, "paths", None)
    return None if paths is None else [str(p) for p in paths]


def split_image(split: Any, index: int) -> torch.Tensor:
    """One image of a split as uint8 ``[C, H, W]``."""
    if isinstance(split, ImageTensors):
        return split.images[index]
    item = split[index]
    if item is None:
        raise ZooError(f"image {index} of the split is unreadable")
    return torch.as_tensor(item[0])


@dataclass
class Evaluation:
    """One model's results on one split; ``logits`` and ``targets`` are in split order."""

    info: ModelInfo
    data: EvalData
    confusion: torch.Tensor
    loss: float
    top_k: int
    top_k_accuracy: float
    logits: torch.Tensor
    targets: torch.Tensor


def run(
    model: Any,
    data: EvalData,
    *,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype,
    workers: int,
    tta: str | None = None,
) -> Evaluation:
    """Run ``model`` (a ``zoo.models.inference.LoadedModel``) over the split; with ``tta``
    (a ``zoo.tasks.tta`` mode), on each image's augmented views, averaging probabilities."""
    from zoo.data.batches import make_batches
    from zoo.tasks.tta import TTA
    from zoo.train.eval_loop import evaluate

    info = model.info
    batches = make_batches(data.split, batch_size, device, train=False, workers=workers, seed=0)
    net = model if tta is None else TTA(model, tta)
    result = evaluate(
        net, batches, model.normalizer, info.num_classes, device, amp_dtype, keep_logits=True
    )
    if result.logits is None or result.targets is None:
        raise ZooError(f"no readable images in the {data.split_name} split of {data.data}")
    return Evaluation(
        info=info,
        data=data,
        confusion=result.confusion,
        loss=result.loss,
        top_k=min(5, info.num_classes),
        top_k_accuracy=result.top5,
        logits=result.logits,
        targets=result.targets,
    )


def report(evaluation: Evaluation, model_path: Path, samples: bool = False) -> dict[str, Any]:
    """The JSON report: accuracy, top-k (``top_k`` = min(5, classes), ``top_k_accuracy``; also
    ``top5_accuracy`` when k is 5), macro and weighted averages, per-class metrics and the
    confusion matrix (rows: true class, columns: predicted); with ``samples``, each image's
    true class, predicted class and top-k classes (indices, in split order; the key is
    ``top5`` when k is 5, else ``top_k``).

    Macro averages run over the classes present among the targets or predictions, as
    scikit-learn's defaults do: evaluating on data that lacks some of the model's classes does
    not count those as zeros.
    """
    from zoo.train.metrics import from_confusion

    info = evaluation.info
    m = from_confusion(evaluation.confusion, info.classes)
    out: dict[str, Any] = {
        "model": str(model_path),
        "arch": info.arch,
        "epoch": info.epoch,
        "data": evaluation.data.data,
        "split": evaluation.data.split_name,
        "count": int(evaluation.confusion.sum().item()),
        "accuracy": m["accuracy"],
        # top-k with k = min(5, classes); under its top-5 name only when k is 5
        **({"top5_accuracy": evaluation.top_k_accuracy} if evaluation.top_k == 5 else {}),
        "top_k": evaluation.top_k,
        "top_k_accuracy": evaluation.top_k_accuracy,
        "loss": evaluation.loss,
        "macro": {
            "precision": m["precision"],
            "recall": m["recall"],
            "f1": m["f1"],
            "classes": m["averaged_classes"],
        },
        "weighted": {
            "precision": m["weighted_precision"],
            "recall": m["weighted_recall"],
            "f1": m["weighted_f1"],
        },
        "per_class": m["per_class"],
        "classes": list(info.classes),
        "confusion_matrix": evaluation.confusion.tolist(),
    }
    if samples:
        top = evaluation.logits.topk(evaluation.top_k, dim=1).indices
        key = "top5" if evaluation.top_k == 5 else "top_k"
        out["samples"] = {
            "targets": evaluation.targets.tolist(),
            "predictions": evaluation.logits.argmax(dim=1).tolist(),
            key: top.tolist(),
        }
    return out
