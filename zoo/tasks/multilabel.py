"""What ``zoo eval`` reports on a multi-label model: per-class precision, recall, F1, AP and
threshold, micro and macro averages, mAP, subset accuracy and Hamming loss (the metrics of
``zoo.labeling.label_sets``), calibration per class, the images whose label sets are most
wrong, precision-recall curves, and the same figures with test-time augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.tasks.insights import BINS, worst_first


def _scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[Any, Any]:
    return logits.double().sigmoid().numpy(), targets.double().numpy()


def thresholds_of(info: Any) -> list[float]:
    """The model's thresholds (0.5 each when its weights record none)."""
    from zoo.labeling.label_sets import DEFAULT_THRESHOLD

    return list(info.thresholds or [DEFAULT_THRESHOLD] * info.num_classes)


def metrics(logits: torch.Tensor, targets: torch.Tensor, info: Any) -> dict[str, Any]:
    """The metrics at the model's thresholds, with each class's average precision."""
    from zoo.labeling.label_sets import at_thresholds, average_precision, mean_ap

    probs, truth = _scores(logits, targets)
    found = at_thresholds(probs, truth, thresholds_of(info), list(info.classes))
    ap = average_precision(probs, truth)
    for row, value in zip(found["per_class"], ap, strict=True):
        row["ap"] = value
    return {"map": mean_ap(ap), **found}


def report(evaluation: Any, model_path: Path) -> dict[str, Any]:
    """``eval.json`` of a multi-label model (``evaluation``: a ``zoo.tasks.evaluation``
    ``Evaluation``). Macro averages and mAP run over the classes present in the data (or,
    for F1, the predictions), as single-label macro averages do."""
    info = evaluation.info
    m = metrics(evaluation.logits, evaluation.targets, info)
    present = sum(1 for r in m["per_class"] if r["support"] > 0)
    return {
        "model": str(model_path),
        "arch": info.arch,
        "epoch": info.epoch,
        "task": "multi-label",
        "data": evaluation.data.data,
        "split": evaluation.data.split_name,
        "count": int(evaluation.targets.shape[0]),
        "loss": evaluation.loss,
        "map": m["map"],
        "micro": {
            "precision": m["precision_micro"],
            "recall": m["recall_micro"],
            "f1": m["f1_micro"],
        },
        "macro": {
            "precision": m["precision_macro"],
            "recall": m["recall_macro"],
            "f1": m["f1_macro"],
            "classes": present,
        },
        "exact": m["exact"],
        "hamming": m["hamming"],
        "thresholds": dict(zip(info.classes, thresholds_of(info), strict=True)),
        "per_class": m["per_class"],
        "classes": list(info.classes),
    }


def calibration(logits: torch.Tensor, targets: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    """Each class's expected calibration error (its sigmoid's probability against how often
    the label is present, over equal-width bins), their mean as ``ece``, and the bins pooled
    over every class for the reliability diagram (``accuracy``: the share of present labels)."""
    probs, truth = logits.double().sigmoid(), targets.double()

    def binned(p: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        edges = torch.linspace(0, 1, BINS + 1, dtype=torch.float64)
        which = torch.searchsorted(edges[1:], p.contiguous(), side="left").clamp_(0, BINS - 1)
        count = torch.bincount(which, minlength=BINS).double()
        conf = torch.bincount(which, weights=p, minlength=BINS)
        hits = torch.bincount(which, weights=y, minlength=BINS)
        filled = count > 0
        mean_conf = torch.where(filled, conf / count.clamp_min(1), torch.nan)
        mean_hit = torch.where(filled, hits / count.clamp_min(1), torch.nan)
        return {
            "ece": round(float(((hits - conf).abs() / max(int(p.numel()), 1)).sum()), 6),
            "bins": BINS,
            "count": [int(c) for c in count.tolist()],
            "accuracy": [None if v != v else round(v, 6) for v in mean_hit.tolist()],
            "confidence": [None if v != v else round(v, 6) for v in mean_conf.tolist()],
        }

    per_class = [
        {"class": c, "ece": binned(probs[:, k], truth[:, k])["ece"]} for k, c in enumerate(classes)
    ]
    pooled = binned(probs.flatten(), truth.flatten())
    mean = sum(r["ece"] for r in per_class) / max(len(per_class), 1)
    return {**pooled, "ece": round(mean, 6), "pooled_ece": pooled["ece"], "per_class": per_class}


def top_losses(logits: torch.Tensor, targets: torch.Tensor, info: Any, n: int) -> list[int]:
    """Indices of the ``n`` images whose predicted label set is wrong with the highest binary
    cross-entropy (summed over classes), highest first; ties keep split order."""
    if n <= 0 or logits.shape[0] == 0:
        return []
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.float(), targets.float(), reduction="none"
    ).sum(dim=1)
    cuts = torch.tensor(thresholds_of(info), dtype=torch.float32)
    predicted = logits.float().sigmoid() >= cuts
    return worst_first(losses, (predicted != (targets > 0.5)).any(dim=1), n)


def top_loss_entries(
    logits: torch.Tensor,
    targets: torch.Tensor,
    indices: list[int],
    info: Any,
    paths: list[str] | None,
) -> list[dict[str, Any]]:
    """One record per top-loss image: where it is, its true and predicted labels
    (space-separated), the class it is most wrong about with that class's probability, and
    the loss."""
    classes = list(info.classes)
    probs = logits.float().sigmoid()
    cuts = torch.tensor(thresholds_of(info), dtype=torch.float32)
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.float(), targets.float(), reduction="none"
    )
    entries = []
    for i in indices:
        truth, predicted = targets[i] > 0.5, probs[i] >= cuts
        worst = int(losses[i].argmax())
        entry: dict[str, Any] = {"index": i}
        if paths is not None:
            entry["path"] = paths[i]
        entry.update(
            {
                "true": " ".join(c for c, t in zip(classes, truth.tolist(), strict=True) if t),
                "predicted": " ".join(
                    c for c, p in zip(classes, predicted.tolist(), strict=True) if p
                ),
                "worst_class": classes[worst],
                "probability": round(float(probs[i, worst]), 6),
                "loss": round(float(losses[i].sum()), 6),
            }
        )
        entries.append(entry)
    return entries


def tta_summary(augmented: Any, mode: str) -> dict[str, Any]:
    """The metrics of an evaluation with test-time augmentation (sigmoids averaged)."""
    from zoo.tasks.tta import view_count

    m = metrics(augmented.logits, augmented.targets, augmented.info)
    cal = calibration(augmented.logits, augmented.targets, list(augmented.info.classes))
    return {
        "mode": mode,
        "views": view_count(mode),
        "map": m["map"],
        "f1_micro": m["f1_micro"],
        "f1_macro": m["f1_macro"],
        "exact": m["exact"],
        "loss": augmented.loss,
        "ece": cal["ece"],
    }


def pr_curves_png(logits: torch.Tensor, targets: torch.Tensor, info: Any, title: str = "") -> bytes:
    """Each class's precision-recall curve (scikit-learn's), with its AP in the legend and a
    dot at its threshold."""
    from sklearn.metrics import precision_recall_curve

    from zoo.tasks.plots import figure, png

    probs, truth = _scores(logits, targets)
    fig = figure(6.4, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    m = metrics(logits, targets, info)
    for k, row in enumerate(m["per_class"]):
        if row["support"] == 0:
            continue
        precision, recall, _ = precision_recall_curve(truth[:, k] > 0.5, probs[:, k])
        (line,) = ax.plot(recall, precision, label=f"{row['class']} (AP {row['ap']:.3f})")
        ax.plot(row["recall"], row["precision"], "o", color=line.get_color())
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="lower left", fontsize="x-small", ncol=2)
    ax.set_title((f"{title}\n" if title else "") + f"mAP {m['map']:.4f}; dots: thresholds")
    return png(fig)
