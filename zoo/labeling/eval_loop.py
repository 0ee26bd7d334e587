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
    task: Any = None,
) -> EvalResult:
    """Run a model over a batch source; confusion matrix, mean loss and top-5 accuracy (for a
    ``task`` whose metrics rank every image's scores, multi-label, the logits and label
    vectors instead, always kept).

    ``normalize`` turns float images in [0, 1] into the network's input (a
    ``zoo.models.inference.Normalizer``). With several processes (``dist``, a
    ``zoo.train.runtime.Dist``) each rank evaluates its share and the sums are all-reduced
    (the kept scores gathered).
    """
    from zoo.labeling.task import SINGLE, task_named

    task = task or task_named(SINGLE)
    keep = keep_logits or task.keeps_scores
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
        yb = task.encode(yb, num_classes)
        loss = loss_fn(logits, yb) if loss_fn is not None else task.loss(logits, yb)
        n = yb.shape[0]
        if task.keeps_scores:
            top = loss.new_zeros(())
        else:
            top = logits.topk(k, dim=1).indices.eq(yb[:, None]).any(dim=1).sum()
            cm += confusion_matrix(logits.argmax(dim=1), yb, num_classes)
        sums += torch.stack(
            [
                loss.detach().to(sums.dtype) * n,
                top.to(sums.dtype),
                loss.new_full((), n).to(sums.dtype),
            ]
        )
        if keep:
            kept_logits.append(logits if task.keeps_scores else logits.cpu())
            kept_targets.append(yb if task.keeps_scores else yb.cpu())
    logits_all = torch.cat(kept_logits) if kept_logits else None
    targets_all = torch.cat(kept_targets) if kept_targets else None
    if dist is not None and dist.enabled:
        torch.distributed.all_reduce(cm)
        torch.distributed.all_reduce(sums)
        if task.keeps_scores:
            empty = torch.zeros(0, num_classes, device=device)
            logits_all = gather(logits_all if logits_all is not None else empty, dist.world)
            targets_all = gather(targets_all if targets_all is not None else empty, dist.world)
    model.train(was_training)
    loss_sum, top5, count = sums.tolist()
    count = max(count, 1.0)
    return EvalResult(
        cm.cpu(),
        loss_sum / count,
        top5 / count,
        int(count),
        None if logits_all is None or not len(logits_all) else logits_all.cpu(),
        None if targets_all is None or not len(targets_all) else targets_all.cpu(),
    )


def gather(rows: torch.Tensor, world: int) -> torch.Tensor:
    """Every process's ``[n_i, K]`` rows, concatenated in rank order (``all_gather`` needs
    equal shapes: each share is padded to the longest, then cut back)."""
    size = torch.tensor([rows.shape[0]], device=rows.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    torch.distributed.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = rows.new_zeros(longest, rows.shape[1])
    padded[: rows.shape[0]] = rows
    shares = [torch.zeros_like(padded) for _ in range(world)]
    torch.distributed.all_gather(shares, padded)
    return torch.cat([share[: int(n.item())] for share, n in zip(shares, sizes, strict=True)])
