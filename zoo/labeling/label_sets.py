"""Multi-label metrics, from every image's per-class probabilities and its label set:
average precision per class and its macro mean (mAP), with scikit-learn's definition; and at
per-class thresholds, precision, recall and F1 per class, micro and macro F1, subset accuracy
(``exact``) and the Hamming loss. Thresholds are chosen per class on a split to maximise F1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# The threshold of a class that the data cannot choose one for (no positive image).
DEFAULT_THRESHOLD = 0.5


def average_precision(probs: np.ndarray, targets: np.ndarray) -> list[float | None]:
    """Each class's average precision (scikit-learn's ``average_precision_score``); None for
    a class without a positive image, where it is undefined."""
    from sklearn.metrics import average_precision_score

    out: list[float | None] = []
    for k in range(targets.shape[1]):
        positives = targets[:, k] > 0.5
        out.append(
            float(average_precision_score(positives, probs[:, k])) if positives.any() else None
        )
    return out


def mean_ap(ap: Sequence[float | None]) -> float:
    """The macro mean over the classes that have an average precision."""
    found = [v for v in ap if v is not None]
    return float(np.mean(found)) if found else 0.0


def choose_thresholds(probs: np.ndarray, targets: np.ndarray) -> list[float]:
    """Per class, the threshold maximising F1 on these images: halfway between the lowest
    probability it counts positive and the next lower probability (a margin on both sides
    rather than a value that fits these images exactly); ``DEFAULT_THRESHOLD`` for a class
    without a positive image."""
    from sklearn.metrics import precision_recall_curve

    chosen = []
    for k in range(targets.shape[1]):
        positives = targets[:, k] > 0.5
        if not positives.any():
            chosen.append(DEFAULT_THRESHOLD)
            continue
        scores = probs[:, k].astype(np.float64)
        precision, recall, cuts = precision_recall_curve(positives, scores)
        p, r = precision[:-1], recall[:-1]
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
        cut = float(cuts[int(np.argmax(f1))])  # the first best: the lowest such cut
        below = scores[scores < cut]
        threshold = (cut + float(below.max())) / 2 if below.size else cut / 2
        chosen.append(round(threshold, 6))
    return chosen


def at_thresholds(
    probs: np.ndarray,
    targets: np.ndarray,
    thresholds: Sequence[float],
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """Metrics of the label sets the thresholds give (a class is predicted when its probability
    is at least its threshold). Macro F1 averages the classes that occur among the labels or
    the predictions, as single-label metrics do; a class without predictions (or positives)
    has precision (or recall) 0, as scikit-learn's ``zero_division=0``."""
    truth = targets > 0.5
    predicted = probs >= np.asarray(thresholds, dtype=probs.dtype)[None, :]
    tp = (truth & predicted).sum(axis=0).astype(np.float64)
    fp = (~truth & predicted).sum(axis=0).astype(np.float64)
    fn = (truth & ~predicted).sum(axis=0).astype(np.float64)
    support = truth.sum(axis=0)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=2 * tp + fp + fn > 0)
    present = (support + predicted.sum(axis=0)) > 0
    if not present.any():
        present[:] = True
    micro = 2 * tp.sum() + fp.sum() + fn.sum()
    names = classes or [str(i) for i in range(truth.shape[1])]
    n = max(truth.shape[0], 1)
    return {
        "f1_micro": float(2 * tp.sum() / micro) if micro else 0.0,
        "precision_micro": float(tp.sum() / max(tp.sum() + fp.sum(), 1)),
        "recall_micro": float(tp.sum() / max(tp.sum() + fn.sum(), 1)),
        "f1_macro": float(f1[present].mean()),
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "exact": float((truth == predicted).all(axis=1).sum() / n),
        "hamming": float((truth != predicted).sum() / (n * truth.shape[1])),
        "per_class": [
            {
                "class": names[k],
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
                "threshold": float(thresholds[k]),
            }
            for k in range(truth.shape[1])
        ],
    }
