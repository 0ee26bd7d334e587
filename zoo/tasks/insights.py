"""What an evaluation's logits say beyond the metrics: which images the model gets most
confidently wrong (top losses) and whether its probabilities can be trusted (calibration)."""

from __future__ import annotations

from typing import Any

import torch

# Equal-width confidence bins for the expected calibration error (Guo et al., 2017, use 15).
BINS = 15


def top_losses(logits: torch.Tensor, targets: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` misclassified images with the highest cross-entropy loss, highest
    first: the ones the model is most confidently wrong about. Ties keep split order."""
    if n <= 0 or logits.shape[0] == 0:
        return []
    losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    return worst_first(losses, logits.argmax(dim=1) != targets, n)


def worst_first(losses: torch.Tensor, wrong: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` images ``wrong`` marks with the highest ``losses``, highest first;
    ties keep split order (multi-label top losses rank alike)."""
    found = wrong.nonzero().flatten()
    order = torch.sort(losses[found], descending=True, stable=True).indices
    return found[order][:n].tolist()


def top_loss_entries(
    logits: torch.Tensor,
    targets: torch.Tensor,
    indices: list[int],
    classes: list[str],
    paths: list[str] | None,
) -> list[dict[str, Any]]:
    """One record per top-loss image: where it is (``index`` in split order, and ``path`` for
    image files), its true and predicted class, the predicted class's probability, the true
    class's probability and the loss."""
    probs = logits.float().softmax(dim=1)
    losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    entries = []
    for i in indices:
        true, predicted = int(targets[i]), int(probs[i].argmax())
        entry: dict[str, Any] = {"index": i}
        if paths is not None:
            entry["path"] = paths[i]
        entry.update(
            {
                "true": classes[true],
                "predicted": classes[predicted],
                "probability": round(float(probs[i, predicted]), 6),
                "true_probability": round(float(probs[i, true]), 6),
                "loss": round(float(losses[i]), 6),
            }
        )
        entries.append(entry)
    return entries


def calibration(logits: torch.Tensor, targets: torch.Tensor, bins: int = BINS) -> dict[str, Any]:
    """Expected calibration error over equal-width bins of the top-1 probability (bin ``b``
    holds confidences in ``(b/bins, (b+1)/bins]``): the bins' gaps between accuracy and mean
    confidence, weighted by their share of the images. Per-bin figures feed the reliability
    diagram; empty bins have null accuracy and confidence."""
    probs = logits.float().softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets).double()
    confidence = confidence.double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.searchsorted(edges[1:], confidence, side="left").clamp_(0, bins - 1)
    count = torch.bincount(which, minlength=bins).double()
    conf_sum = torch.bincount(which, weights=confidence, minlength=bins)
    acc_sum = torch.bincount(which, weights=correct, minlength=bins)
    n = max(int(confidence.shape[0]), 1)
    ece = float(((acc_sum - conf_sum).abs() / n).sum())
    filled = count > 0
    mean_conf = torch.where(filled, conf_sum / count.clamp_min(1), torch.nan)
    mean_acc = torch.where(filled, acc_sum / count.clamp_min(1), torch.nan)
    gaps = (mean_acc - mean_conf).abs()
    return {
        "ece": round(ece, 6),
        "mce": round(float(gaps[filled].max()) if bool(filled.any()) else 0.0, 6),
        "bins": bins,
        "count": [int(c) for c in count.tolist()],
        "accuracy": [None if v != v else round(v, 6) for v in mean_acc.tolist()],
        "confidence": [None if v != v else round(v, 6) for v in mean_conf.tolist()],
        "mean_confidence": round(float(confidence.mean()) if confidence.numel() else 0.0, 6),
    }
