"""What the frozen features are worth on multi-label data (a set of labels per image): a
one-vs-rest logistic regression and a cosine kNN, ranked by mAP.

The logistic regression is scikit-learn's ``OneVsRestClassifier(LogisticRegression(C=C))``:
one L2-penalized binary problem per class, all fitted at once by ``zoo.probing.linear``'s
L-BFGS (the problems share no weight, so their summed objective has each one's minimum). ``C``
is chosen as the single-label probe chooses it (``linear.search``), by the held-out part's mAP
(ties to the lower binary cross-entropy). That part is the seeded split ``zoo.data.splits``
makes of label sets, stratified by each image's first label, the same way the data sources
hold out multi-label validation images; no stratification keeps every label's share exactly
(that needs an iterative scheme no installed library offers), and the mAP that chooses ``C``
skips any class the part lacks, as ``zoo train``'s does.

On the validation split: **mAP** (the ranking's key), and micro and macro F1 at per-class
thresholds. ``zoo train`` chooses those thresholds on the validation split itself; here they are
chosen the same way (``zoo.labeling.label_sets.choose_thresholds``: each class's best F1) on the
held-out part of the training split, by the fit at the chosen ``C`` there, so that validation
F1 is not measured on the images that tuned it (0.5 for a class the part has no positive of).
The kNN's probability of a label is the share of the ``k`` nearest training features
(cosine) that carry it (scikit-learn's ``KNeighborsClassifier.predict_proba`` on label
vectors); its mAP is the second score. Every metric is ``zoo.labeling``'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from zoo.probing.features import Extracted


@dataclass
class LabelSetScores:
    """Validation mAP, micro and macro F1 of the one-vs-rest logistic regression at the chosen
    ``C``, and the kNN's validation mAP; ``held_out`` maps each ``C`` tried to its held-out
    mAP; ``thresholds``: each class's, chosen on the held-out part."""

    map: float
    f1_micro: float
    f1_macro: float
    knn_map: float
    C: float
    held_out: dict[float, float] = field(default_factory=dict)
    thresholds: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "held_out": [[c, a] for c, a in self.held_out.items()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelSetScores:
        return cls(
            float(data["map"]),
            float(data["f1_micro"]),
            float(data["f1_macro"]),
            float(data["knn_map"]),
            float(data["C"]),
            {float(c): float(a) for c, a in data.get("held_out", [])},
            [float(t) for t in data.get("thresholds", [])],
        )

    def row(self) -> dict[str, Any]:
        """The probe row's values: ``f1`` is macro F1, as for single-label data."""
        return {
            "map": self.map,
            "f1_micro": self.f1_micro,
            "f1": self.f1_macro,
            "knn_map": self.knn_map,
            "C": self.C,
        }


def knn_shares(
    train: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, k: int | None = None
) -> torch.Tensor:
    """``[q, K]``: the share of each query's ``k`` nearest training features (cosine) that
    carry each label."""
    import torch

    from zoo.probing.linear import KNN_K, neighbours

    labels = train_labels.float()
    found = [labels[nearest].mean(dim=1) for nearest in neighbours(train, query, k or KNN_K)]
    return torch.cat(found) if found else labels.new_zeros(0, labels.shape[1])


def mean_average_precision(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """``zoo.labeling``'s mAP (scikit-learn's average precision per class, macro mean over the
    classes with a positive image)."""
    from zoo.labeling.label_sets import average_precision, mean_ap

    probs, targets = _numpy(probabilities), _numpy(labels)
    return mean_ap(average_precision(probs, targets))


def score(extracted: Extracted, num_classes: int, seed: int, device: Any = "cpu") -> LabelSetScores:
    """Choose ``C`` by held-out mAP, fit it on the whole training split, and score the fit
    and the kNN on the validation split (labels: ``{0, 1}`` vectors ``[n, K]``)."""
    from zoo.labeling.label_sets import DEFAULT_THRESHOLD, at_thresholds, choose_thresholds
    from zoo.probing.linear import fit_and_apply, fit_threads, on_device, search

    train_x, train_y, val_x, val_y = on_device(extracted, device)
    train_y, val_y = train_y.float(), val_y.float()
    with fit_threads(train_x, num_classes):
        found = search(train_x, train_y, num_classes, seed, _judge)
        probabilities = fit_and_apply(train_x, train_y, val_x, num_classes, found.C).sigmoid()
        shares = knn_shares(train_x, train_y, val_x)
    if found.logits is None or found.labels is None:
        thresholds = [DEFAULT_THRESHOLD] * num_classes
    else:
        thresholds = choose_thresholds(_numpy(found.logits.sigmoid()), _numpy(found.labels))
    at = at_thresholds(_numpy(probabilities), _numpy(val_y), thresholds)
    return LabelSetScores(
        map=mean_average_precision(probabilities, val_y),
        f1_micro=at["f1_micro"],
        f1_macro=at["f1_macro"],
        knn_map=mean_average_precision(shares, val_y),
        C=found.C,
        held_out=found.held_out,
        thresholds=thresholds,
    )


def _judge(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Held-out mAP and binary cross-entropy."""
    import torch.nn.functional as F

    loss = F.binary_cross_entropy_with_logits(logits, labels).item()
    return mean_average_precision(logits.sigmoid(), labels), loss


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()
