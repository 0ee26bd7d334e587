"""What the frozen features are worth: a multinomial logistic regression and a cosine kNN.

The logistic regression is scikit-learn's ``LogisticRegression`` (L2 penalty, multinomial,
unpenalized intercept) written as one objective for torch's L-BFGS, so it runs where the
features are (the GPU when there is one) and on every core: the mean cross-entropy plus
``||W||^2 / (2 C n)``, whose minimum is the one scikit-learn finds for the same ``C`` (its
objective is ``C`` times the summed cross-entropy plus ``||W||^2 / 2``). Features are
standardized with the training split's mean and std first. ``C`` is chosen on a held-out,
stratified part of the training split (seeded), from strong to weak regularization, each fit
starting from the previous one's weights; the chosen ``C`` is then fitted on the whole training
split and scored on the validation split.

The kNN votes among the ``k`` training features nearest by cosine similarity, one vote each
(ties to the lower class index, as scikit-learn's ``KNeighborsClassifier`` breaks them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from zoo.probing.features import Extracted

# Bumped when the fit changes in a way the constants below do not show.
FIT_FORMAT = 1
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
HELD_OUT = 0.2  # of the training split, to choose C on
MAX_ITER = 500  # L-BFGS iterations per fit at most
# Stop when no gradient entry of the (mean) objective exceeds this, keeping this many updates:
# scikit-learn's lbfgs stops at its default tol, 1e-4, on the same objective, with scipy's 10.
TOLERANCE = 1e-4
HISTORY = 10
# Below this many multiply-adds per product of features and weights (n * d * classes), the fit
# runs on one CPU thread: on 1,438 x 256 features it took 5 to 10 times less CPU time than on
# two threads of a loaded two-core machine (the threads mostly waited on each other).
PARALLEL_WORK = 2**25
KNN_K = 20


@dataclass
class Scores:
    """Validation accuracy and macro F1 of the logistic regression at the chosen ``C``, and
    the kNN's validation accuracy; ``held_out`` maps each ``C`` tried to its held-out
    accuracy."""

    accuracy: float
    f1: float
    knn_accuracy: float
    C: float
    held_out: dict[float, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "held_out": [[c, a] for c, a in self.held_out.items()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scores:
        held_out = {float(c): float(a) for c, a in data.get("held_out", [])}
        return cls(
            float(data["accuracy"]),
            float(data["f1"]),
            float(data["knn_accuracy"]),
            float(data["C"]),
            held_out,
        )


def fit_settings(seed: int, num_classes: int) -> dict[str, Any]:
    """Everything besides the features that decides the scores: the key of their cache."""
    return {
        "format": FIT_FORMAT,
        "C": list(C_GRID),
        "held_out": HELD_OUT,
        "max_iter": MAX_ITER,
        "tolerance": TOLERANCE,
        "history": HISTORY,
        "k": KNN_K,
        "seed": seed,
        "classes": num_classes,
    }


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Each tensor centred and scaled by the training features' mean and std (a constant
    feature is only centred)."""
    import torch

    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return [(t - mean) / std for t in (train, *others)]


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    C: float,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_iter: int = MAX_ITER,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``[D, K]`` and intercept ``[K]`` minimizing the mean cross-entropy plus
    ``||W||^2 / (2 C n)`` (scikit-learn's objective for ``C``, divided by ``C n``)."""
    import torch

    n, d = x.shape
    penalty = 1.0 / (C * n)
    # Weights held as [K, D]: x @ w.T and g.T @ x are the fast layouts for these products
    # (three times faster than x.T @ g on the CPU, where x.T is a strided view).
    if start is None:
        w = torch.zeros(num_classes, d, device=x.device, dtype=x.dtype)
        b = torch.zeros(num_classes, device=x.device, dtype=x.dtype)
    else:
        w, b = start[0].T.contiguous(), start[1].clone()
    onehot = torch.zeros(n, num_classes, device=x.device, dtype=x.dtype)
    onehot[torch.arange(n, device=x.device), y] = 1.0
    optimizer = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=TOLERANCE,
        tolerance_change=1e-9,
        history_size=HISTORY,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        # The loss and its gradient by hand: no autograd graph for a problem this small.
        log_p = torch.addmm(b, x, w.T).log_softmax(dim=1)
        loss = -(log_p * onehot).sum() / n + 0.5 * penalty * w.square().sum()
        g = (log_p.exp() - onehot) / n
        w.grad = torch.addmm(w, g.T, x, beta=penalty)
        b.grad = g.sum(dim=0)
        return loss

    optimizer.step(closure)
    return w.T, b


def knn_predict(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    query: torch.Tensor,
    num_classes: int,
    k: int = KNN_K,
    chunk: int = 1024,
) -> torch.Tensor:
    """The majority class among each query's ``k`` nearest training features by cosine
    similarity (ties to the lower class index)."""
    import torch
    import torch.nn.functional as F

    bank = F.normalize(train, dim=1)
    k = min(k, bank.shape[0])
    found = []
    for start in range(0, query.shape[0], chunk):
        q = F.normalize(query[start : start + chunk], dim=1)
        nearest = (q @ bank.T).topk(k, dim=1).indices
        votes = F.one_hot(train_labels[nearest], num_classes).sum(dim=1)
        found.append(votes.argmax(dim=1))
    return torch.cat(found) if found else torch.empty(0, dtype=torch.long)


def score(extracted: Extracted, num_classes: int, seed: int, device: Any = "cpu") -> Scores:
    """Choose ``C`` on a held-out part of the training split, fit it on all of it, and score
    both classifiers on the validation split."""
    import torch

    device = torch.device(device)
    train_x, val_x = (t.to(device, torch.float32) for t in (extracted.train, extracted.val))
    train_y, val_y = (t.to(device) for t in (extracted.train_labels, extracted.val_labels))
    work = train_x.shape[0] * train_x.shape[1] * num_classes
    with _threads(1 if device.type == "cpu" and work < PARALLEL_WORK else None):
        return _score(train_x, train_y, val_x, val_y, num_classes, seed)


def _score(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    num_classes: int,
    seed: int,
) -> Scores:
    import torch

    from zoo.data.splits import stratified_split
    from zoo.labeling.metrics import confusion_matrix, from_confusion

    fit_idx, held_idx = stratified_split(train_y.tolist(), HELD_OUT, seed)
    held_out: dict[float, float] = {}
    chosen, best = C_GRID[0], (-1.0, 0.0)
    if held_idx:
        fx, hx = standardize(train_x[fit_idx], train_x[held_idx])
        fy, hy = train_y[fit_idx], train_y[held_idx]
        start = None
        for C in C_GRID:
            start = fit_logistic(fx, fy, num_classes, C, start)
            logits = hx @ start[0] + start[1]
            accuracy = logits.argmax(dim=1).eq(hy).float().mean().item()
            loss = torch.nn.functional.cross_entropy(logits, hy).item()
            held_out[C] = accuracy
            if (accuracy, -loss) > best:  # ties: the lower held-out loss
                chosen, best = C, (accuracy, -loss)
    sx, sv = standardize(train_x, val_x)
    w, b = fit_logistic(sx, train_y, num_classes, chosen)
    predicted = (sv @ w + b).argmax(dim=1)
    metrics = from_confusion(confusion_matrix(predicted, val_y, num_classes))
    knn = knn_predict(train_x, train_y, val_x, num_classes)
    return Scores(
        accuracy=metrics["accuracy"],
        f1=metrics["f1"],
        knn_accuracy=knn.eq(val_y).float().mean().item(),
        C=chosen,
        held_out=held_out,
    )


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``count`` for the block (None: left as they are)."""
    import torch

    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
