"""Classification metrics: accumulated on the training device without host synchronisation,
computed once from a confusion matrix (the same definitions as scikit-learn's)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


class Accumulator:
    """Running loss sum, correct count and sample count, kept on the device.

    An update is six small kernels and never reads a value on the host. A NaN or infinite
    batch loss makes the loss sum non-finite, which is how ``read`` reports that one occurred.
    ``correct`` counts a batch's images right (the run's task's ``correct``; default: the top
    class is the label).
    """

    def __init__(
        self,
        device: torch.device,
        correct: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.device = device
        self.correct = correct or top_class_correct
        self.reset()

    def reset(self) -> None:
        self.values = torch.zeros(
            3,
            dtype=torch.float64 if self.device.type != "mps" else torch.float32,
            device=self.device,
        )

    def update(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch; ``loss`` is the batch mean. Non-blocking: no ``.item()``."""
        n = targets.shape[0]
        # In-place adds of Python numbers: no host-to-device copy, so no synchronisation.
        self.values[0].add_(loss.detach(), alpha=n)
        self.values[1].add_(self.correct(logits.detach(), targets))
        self.values[2].add_(n)

    def read(self) -> dict[str, float]:
        """Synchronise and return ``loss``, ``accuracy``, ``count`` and ``nonfinite``."""
        loss_sum, correct, count = self.values.tolist()
        finite = math.isfinite(loss_sum)
        count = max(count, 1.0)
        return {
            "loss": loss_sum / count,
            "accuracy": correct / count,
            "count": count,
            "nonfinite": 0.0 if finite else 1.0,
        }


def top_class_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Images whose top class is their label (the largest share of a soft target)."""
    hard = targets.argmax(dim=1) if targets.ndim == 2 else targets
    return (logits.argmax(dim=1) == hard).sum()


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[K, K]`` counts, rows = true class, columns = predicted class (as scikit-learn)."""
    index = targets.long() * num_classes + preds.long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def from_confusion(
    cm: Any, classes: list[str] | None = None, *, present_only: bool = True
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, and macro and weighted averages.

    A class with no predictions (or no samples) gets precision (or recall) 0, as scikit-learn
    does with ``zero_division=0``. Macro averages run over the classes that occur among the
    targets or the predictions, as scikit-learn's default (data that lacks some of the model's
    classes is not marked down for them), so training's validation metrics and ``zoo eval``
    agree; ``present_only=False`` averages over every class (scikit-learn with ``labels`` set
    to all of them).
    """
    cm = torch.as_tensor(cm, dtype=torch.float64).cpu()
    tp = cm.diag()
    support = cm.sum(dim=1)
    predicted = cm.sum(dim=0)
    total = cm.sum().item()
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(
        denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(tp)
    )
    weights = support / max(total, 1)
    names = classes or [str(i) for i in range(cm.shape[0])]
    averaged = support + predicted > 0
    if not present_only or not averaged.any():
        averaged = torch.ones_like(averaged)
    return {
        "accuracy": tp.sum().item() / max(total, 1),
        "precision": precision[averaged].mean().item(),
        "recall": recall[averaged].mean().item(),
        "f1": f1[averaged].mean().item(),
        "averaged_classes": int(averaged.sum().item()),
        "weighted_precision": (precision * weights).sum().item(),
        "weighted_recall": (recall * weights).sum().item(),
        "weighted_f1": (f1 * weights).sum().item(),
        "per_class": [
            {
                "class": names[i],
                "precision": precision[i].item(),
                "recall": recall[i].item(),
                "f1": f1[i].item(),
                "support": int(support[i].item()),
            }
            for i in range(cm.shape[0])
        ],
    }


# Metrics where lower is better (a multi-label run's Hamming loss too).
MINIMIZED = ("loss", "hamming")


def mode_for(metric: str) -> str:
    """``min`` for losses, ``max`` for everything else."""
    return "min" if metric.endswith(MINIMIZED) else "max"
