"""The evaluation loop shared by training's validation and ``zoo eval``: one pass of a model
over a batch source, summed on the device and read once at the end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from zoo.device.precision import autocast
from zoo.labeling.metrics import confusion_matrix


@dataclass
class EvalResult:
    confusion: torch.Tensor
    loss: float
    top5: float
    count: int
    logits: torch.Tensor | None = None
    targets: torch.Tensor | None = None


@torch.no_grad()
def evaluate(
    model: Any,
    batches: Any,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    num_classes: int,
    device: torch.device,
    amp_dtype: torch.dtype,
    loss_fn: Any = None,
    dist: Any = None,
    keep_logits: bool = False,
) -> EvalResult:
    """Run a model over a batch source; confusion matrix, mean loss and top-5 accuracy.

    ``normalize`` turns float images in [0, 1] into the network's input (a
    ``zoo.models.inference.Normalizer``). With several processes (``dist``, a
    ``zoo.train.runtime.Dist``) each rank evaluates its share and the sums are all-reduced.
    """
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    sums = torch.zeros(
        3, dtype=torch.float64 if device.type != "mps" else torch.float32, device=device
    )
    kept_logits, kept_targets = [], []
    k = min(5, num_classes)
    for xb, yb in batches.epoch(0):
        if xb.shape[0] == 0:
            continue
        x = normalize(xb.float().div_(255))
        with autocast(device, amp_dtype):
            logits = model(x)
        logits = logits.float()
        loss = (
            loss_fn(logits, yb)
            if loss_fn is not None
            else torch.nn.functional.cross_entropy(logits, yb)
        )
        top = logits.topk(k, dim=1).indices.eq(yb[:, None]).any(dim=1).sum()
        n = yb.shape[0]
        sums += torch.stack(
            [
                loss.detach().to(sums.dtype) * n,
                top.to(sums.dtype),
                loss.new_full((), n).to(sums.dtype),
            ]
        )
        cm += confusion_matrix(logits.argmax(dim=1), yb, num_classes)
        if keep_logits:
            kept_logits.append(logits.cpu())
            kept_targets.append(yb.cpu())
    if dist is not None and dist.enabled:
        torch.distributed.all_reduce(cm)
        torch.distributed.all_reduce(sums)
    model.train(was_training)
    loss_sum, top5, count = sums.tolist()
    count = max(count, 1.0)
    return EvalResult(
        cm.cpu(),
        loss_sum / count,
        top5 / count,
        int(count),
        torch.cat(kept_logits) if kept_logits else None,
        torch.cat(kept_targets) if kept_targets else None,
    )
