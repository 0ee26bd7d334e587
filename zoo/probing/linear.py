"""What the frozen features are worth: a logistic regression and a cosine kNN.

The logistic regression is scikit-learn's ``LogisticRegression`` (L2 penalty, multinomial,
unpenalized intercept) written as one objective for torch's L-BFGS, so it runs where the
features are (the GPU when there is one) and on every core: the mean cross-entropy plus
``||W||^2 / (2 C n)``, whose minimum is the one scikit-learn finds for the same ``C`` (its
objective is ``C`` times the summed cross-entropy plus ``||W||^2 / 2``). Given label vectors
(multi-label data), ``fit_logistic`` fits one-vs-rest instead (``zoo.probing.multilabel``).
Features are standardized with the training split's mean and std first. ``C`` is chosen on a
held-out, stratified part of the training split (seeded, ``search``), from strong to weak
regularization, each fit starting from the previous one's weights; the chosen ``C`` is then
fitted on the whole training split and scored on the validation split.

The kNN votes among the ``k`` training features nearest by cosine similarity (``neighbours``),
one vote each (ties to the lower class index, as scikit-learn's ``KNeighborsClassifier`` breaks
them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.labeling.task import SINGLE

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

    def row(self) -> dict[str, Any]:
        """The probe row's values."""
        return {
            "accuracy": self.accuracy,
            "f1": self.f1,
            "knn_accuracy": self.knn_accuracy,
            "C": self.C,
        }


def fit_settings(seed: int, num_classes: int, task: str = SINGLE) -> dict[str, Any]:
    """Everything besides the features that decides the scores: the key of their cache."""
    return {
        "format": FIT_FORMAT,
        "task": task,
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
    ``||W||^2 / (2 C n)`` (scikit-learn's objective for ``C``, divided by ``C n``).

    ``y``: class indices ``[n]`` (multinomial), or ``{0, 1}`` label vectors ``[n, K]``
    (one-vs-rest: the cross-entropy is each class's binary one, summed over the classes; the
    classes' problems share no weight, so this one minimum is each binary problem's own, the
    one scikit-learn's ``OneVsRestClassifier(LogisticRegression(C=C))`` finds class by
    class, and the stopping rule, on the largest gradient entry, holds for every class)."""
    import torch
    import torch.nn.functional as F

    n, d = x.shape
    penalty = 1.0 / (C * n)
    # Weights held as [K, D]: x @ w.T and g.T @ x are the fast layouts for these products
    # (three times faster than x.T @ g on the CPU, where x.T is a strided view).
    if start is None:
        w = torch.zeros(num_classes, d, device=x.device, dtype=x.dtype)
        b = torch.zeros(num_classes, device=x.device, dtype=x.dtype)
    else:
        w, b = start[0].T.contiguous(), start[1].clone()
    one_vs_rest = y.ndim == 2
    if one_vs_rest:
        targets = y.to(x.dtype)
    else:
        targets = torch.zeros(n, num_classes, device=x.device, dtype=x.dtype)
        targets[torch.arange(n, device=x.device), y] = 1.0
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
        z = torch.addmm(b, x, w.T)
        if one_vs_rest:  # binary cross-entropy of each class: softplus(z) - y z
            data_loss = (F.softplus(z) - targets * z).sum()
            g = (z.sigmoid() - targets) / n
        else:
            log_p = z.log_softmax(dim=1)
            data_loss = -(log_p * targets).sum()
            g = (log_p.exp() - targets) / n
        loss = data_loss / n + 0.5 * penalty * w.square().sum()
        w.grad = torch.addmm(w, g.T, x, beta=penalty)
        b.grad = g.sum(dim=0)
        return loss

    optimizer.step(closure)
    return w.T, b


@dataclass
class Search:
    """The ``C`` chosen on the held-out part of the training split, each ``C``'s held-out
    metric, and the held-out part's logits at the chosen ``C`` with its labels (None when the
    training split is too small to hold any out)."""

    C: float
    held_out: dict[float, float]
    logits: torch.Tensor | None = None
    labels: torch.Tensor | None = None


def search(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    num_classes: int,
    seed: int,
    judge: Callable[[torch.Tensor, torch.Tensor], tuple[float, float]],
) -> Search:
    """Fit each ``C`` of the grid on the training split less a held-out part, and keep the one
    whose held-out ``judge(logits, labels)`` (a metric, higher is better, and a loss) is best;
    ties go to the lower held-out loss. The held-out part is ``zoo.data.splits``'s seeded
    stratified split of the training labels (a label set counts in its first label's class,
    as the data sources split multi-label data)."""
    from zoo.data.splits import stratified_split

    lists = train_y.tolist()
    if train_y.ndim == 2:
        lists = [[k for k, v in enumerate(row) if v > 0.5] for row in lists]
    fit_idx, held_idx = stratified_split(lists, HELD_OUT, seed)
    found = Search(C_GRID[0], {})
    if not held_idx:
        return found
    fx, hx = standardize(train_x[fit_idx], train_x[held_idx])
    fy, hy = train_y[fit_idx], train_y[held_idx]
    start, best = None, (-1.0, 0.0)
    for C in C_GRID:
        start = fit_logistic(fx, fy, num_classes, C, start)
        logits = hx @ start[0] + start[1]
        metric, loss = judge(logits, hy)
        found.held_out[C] = metric
        if (metric, -loss) > best:
            found.C, found.logits, found.labels, best = C, logits, hy, (metric, -loss)
    return found


def fit_and_apply(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    num_classes: int,
    C: float,
) -> torch.Tensor:
    """The validation logits of the logistic regression fitted at ``C`` on the whole training
    split (both standardized with its statistics)."""
    sx, sv = standardize(train_x, val_x)
    w, b = fit_logistic(sx, train_y, num_classes, C)
    return sv @ w + b


def neighbours(
    train: torch.Tensor, query: torch.Tensor, k: int = KNN_K, chunk: int = 1024
) -> Iterator[torch.Tensor]:
    """The indices ``[q, k]`` of each query's ``k`` nearest training features by cosine
    similarity, ``chunk`` queries at a time."""
    import torch.nn.functional as F

    bank = F.normalize(train, dim=1)
    k = min(k, bank.shape[0])
    for start in range(0, query.shape[0], chunk):
        q = F.normalize(query[start : start + chunk], dim=1)
        yield (q @ bank.T).topk(k, dim=1).indices


def knn_predict(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    query: torch.Tensor,
    num_classes: int,
    k: int = KNN_K,
) -> torch.Tensor:
    """The majority class among each query's ``k`` nearest training features by cosine
    similarity (ties to the lower class index)."""
    import torch
    import torch.nn.functional as F

    found = [
        F.one_hot(train_labels[nearest], num_classes).sum(dim=1).argmax(dim=1)
        for nearest in neighbours(train, query, k)
    ]
    return torch.cat(found) if found else torch.empty(0, dtype=torch.long)


def on_device(extracted: Extracted, device: Any) -> tuple[torch.Tensor, ...]:
    """Training and validation features (float32) and labels, on ``device``."""
    import torch

    device = torch.device(device)
    train_x, val_x = (t.to(device, torch.float32) for t in (extracted.train, extracted.val))
    train_y, val_y = (t.to(device) for t in (extracted.train_labels, extracted.val_labels))
    return train_x, train_y, val_x, val_y


def fit_threads(x: torch.Tensor, num_classes: int) -> contextlib.AbstractContextManager[None]:
    """One CPU thread for a fit on ``x`` too small to gain from more (``PARALLEL_WORK``)."""
    small = x.shape[0] * x.shape[1] * num_classes < PARALLEL_WORK
    return _threads(1 if x.device.type == "cpu" and small else None)


def score(extracted: Extracted, num_classes: int, seed: int, device: Any = "cpu") -> Scores:
    """Choose ``C`` on a held-out part of the training split, fit it on all of it, and score
    both classifiers on the validation split."""
    train_x, train_y, val_x, val_y = on_device(extracted, device)
    with fit_threads(train_x, num_classes):
        return _score(train_x, train_y, val_x, val_y, num_classes, seed)


def _judge(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Held-out accuracy and cross-entropy."""
    import torch.nn.functional as F

    accuracy = logits.argmax(dim=1).eq(labels).float().mean().item()
    return accuracy, F.cross_entropy(logits, labels).item()


def _score(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    num_classes: int,
    seed: int,
) -> Scores:
    from zoo.labeling.metrics import confusion_matrix, from_confusion

    found = search(train_x, train_y, num_classes, seed, _judge)
    predicted = fit_and_apply(train_x, train_y, val_x, num_classes, found.C).argmax(dim=1)
    metrics = from_confusion(confusion_matrix(predicted, val_y, num_classes))
    knn = knn_predict(train_x, train_y, val_x, num_classes)
    return Scores(
        accuracy=metrics["accuracy"],
        f1=metrics["f1"],
        knn_accuracy=knn.eq(val_y).float().mean().item(),
        C=found.C,
        held_out=found.held_out,
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
