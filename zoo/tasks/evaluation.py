"""Evaluating a trained model: rebuild the data it is judged on, run it, and report.

Without ``--data`` the run's own validation split is rebuilt from the settings stored in the
weights (dataset, seed, validation fraction), so it holds exactly the images training held out.
Single-label metrics come from the confusion matrix (``zoo.labeling.metrics.from_confusion``),
multi-label ones from every image's scores (``zoo.tasks.multilabel``); both use scikit-learn's
definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.data.splits import ImageTensors, is_stream, resize_tensors
from zoo.errors import ZooError, shown
from zoo.models.weights import ModelInfo


@dataclass
class EvalData:
    """The images a model is evaluated on, with labels in the model's class order."""

    split: Any  # ImageTensors, or a streamed dataset of (uint8 [C, H, W], label) items
    data: str  # the dataset as given (name[:k=v] or path)
    split_name: str


def eval_data(info: ModelInfo, data: str | None, split: str | None, source: Path) -> EvalData:
    """Build the split of ``data`` (default: the run's own data) at the model's input size.

    ``split`` None: the validation split of the run's own data; for data given as ``data``,
    the split its source proposes (a folder without ``train/`` or ``val/``, a test set: all).
    """
    from zoo.data.relabel import label_map, pick_split, relabel
    from zoo.data.source import SPLITS, build_splits, default_split, for_channels, resolve_data

    if split is not None and split not in SPLITS:
        raise ZooError(f"--split must be one of {', '.join(SPLITS)}, got {shown(split)}")
    config = info.config or {}
    own = data is None
    if own:
        data = config.get("data")
        if not data:
            raise ZooError(f"{source} records no training data; pass --data NAME|PATH")
    seed = int(config.get("seed", 0))
    val_fraction = float(config.get("val_split", 0.2))
    # The run's own data may be named as runs did before they recorded qualified names.
    resolved = resolve_data(str(data), prefer="zoo" if own else None)
    if split is None:
        split = "val" if own else default_split(resolved)
    if split == "all":
        val_fraction = 0.0  # every image, none held out
    splits = build_splits(
        for_channels(resolved, info.in_chans),
        image_size=info.image_size,
        seed=seed,
        val_fraction=val_fraction,
    )
    if splits.in_chans != info.in_chans:
        raise ZooError(
            f"{data} has {splits.in_chans}-channel images; the model takes {info.in_chans}"
        )
    mapping = label_map(splits.classes, info.classes, str(data))
    chosen = relabel(pick_split(splits, split, str(data)), mapping)
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


def split_images(split: Any, indices: list[int]) -> list[torch.Tensor]:
    """Images of a split as uint8 ``[C, H, W]``, by their index in split order (a stream is
    read once, in the order ``zoo eval`` judged it)."""
    if isinstance(split, ImageTensors):
        return [split.images[i] for i in indices]
    if is_stream(split):
        set_epoch = getattr(split, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(0)
        wanted, found = set(indices), {}
        for i, item in enumerate(it for it in split if it is not None):
            if i in wanted:
                found[i] = torch.as_tensor(item[0])
            if len(found) == len(wanted):
                break
        return [found[i] for i in indices]
    images = []
    for index in indices:
        item = split[index]
        if item is None:
            raise ZooError(f"image {index} of the split is unreadable")
        images.append(torch.as_tensor(item[0]))
    return images


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
    from zoo.labeling.eval_loop import evaluate
    from zoo.labeling.task import task_named, task_of
    from zoo.tasks.tta import TTA

    info = model.info
    task = task_named(task_of(info))
    # A stream is judged in its own order, in this process, so that its items keep their index.
    workers = 0 if is_stream(data.split) else workers
    batches = make_batches(data.split, batch_size, device, train=False, workers=workers, seed=0)
    net = model if tta is None else TTA(model, tta, task)
    result = evaluate(
        net,
        batches,
        model.normalizer,
        info.num_classes,
        device,
        amp_dtype,
        keep_logits=True,
        task=task,
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
    """``eval.json``'s figures: those of the model's task (``single_label_report``, or
    ``zoo.tasks.multilabel.report``, which ``samples`` does not apply to)."""
    from zoo.labeling.task import MULTI, task_of

    if task_of(evaluation.info) == MULTI:
        from zoo.tasks import multilabel

        return multilabel.report(evaluation, model_path)
    return single_label_report(evaluation, model_path, samples)


def single_label_report(
    evaluation: Evaluation, model_path: Path, samples: bool = False
) -> dict[str, Any]:
    """The JSON report: accuracy, top-k (``top_k`` = min(5, classes), ``top_k_accuracy``; also
    ``top5_accuracy`` when k is 5), macro and weighted averages, per-class metrics and the
    confusion matrix (rows: true class, columns: predicted); with ``samples``, each image's
    true class, predicted class and top-k classes (indices, in split order; the key is
    ``top5`` when k is 5, else ``top_k``).

    Macro averages run over the classes present among the targets or predictions, as
    scikit-learn's defaults do: evaluating on data that lacks some of the model's classes does
    not count those as zeros.
    """
    from zoo.labeling.metrics import from_confusion

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
