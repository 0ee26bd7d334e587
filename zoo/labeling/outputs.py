"""How a task shows its answers: each image's answer from the model's logits, as JSON (``zoo
predict --json``, ``POST /predict`` of ``zoo serve``), CSV and a table. Single-label runs answer
each image with its top-k classes; another task registers its own output in ``OUTPUTS``, and
the commands that print or serve predictions do not change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from zoo.errors import ZooError

if TYPE_CHECKING:
    import torch


@dataclass
class Prediction:
    """One image's answer (what its run's output computes: for single-label runs, the top-k
    ``(class, probability)`` pairs), or why it could not be read. With test-time augmentation,
    ``answer`` is the averaged prediction and ``plain`` the prediction on the image alone.
    ``path`` is the file (an upload's name when served; None for a raw request body)."""

    path: Path | str | None
    answer: Any = None
    error: str | None = None
    plain: Any = None


class Output(Protocol):
    """How a task turns a model's logits into answers and shows them. ``zoo predict`` and
    ``zoo serve`` only call these, so a task with another shape of answer needs no change to
    either."""

    task: str
    tta: str | None  # the test-time augmentation the answers average over (None: none)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> the probabilities the answers are made of (float32)."""
        ...

    def answers(self, probabilities: torch.Tensor) -> list[Any]:
        """A batch's probabilities -> each image's answer."""
        ...

    def record(self, prediction: Prediction) -> dict[str, Any]:
        """One image as JSON: ``zoo predict --json``'s entry and ``POST /predict``'s."""
        ...

    def csv_header(self) -> list[str]: ...

    def csv_row(self, prediction: Prediction) -> list[str]: ...

    def table_columns(self) -> list[tuple[str, str]]:
        """``(name, justify)`` of each column of ``zoo predict``'s table."""
        ...

    def table_row(self, prediction: Prediction) -> list[str]: ...


class SingleLabel:
    """One class per image: softmax probabilities, each image answered by its top-k
    ``(class, probability)`` pairs (probabilities rounded to 6 decimals)."""

    task = "single-label"

    def __init__(self, classes: list[str], top_k: int = 5, tta: str | None = None) -> None:
        self.classes = list(classes)
        self.k = max(1, min(top_k, len(self.classes)))
        self.tta = tta

    @classmethod
    def of(cls, info: Any, top_k: int, tta: str | None) -> SingleLabel:
        return cls(list(info.classes), top_k, tta)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)

    def answers(self, probabilities: torch.Tensor) -> list[list[tuple[str, float]]]:
        values, indices = probabilities.topk(self.k, dim=1)
        return [
            [(self.classes[i], round(p, 6)) for p, i in zip(vs, ix, strict=True)]
            for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def record(self, prediction: Prediction) -> dict[str, Any]:
        path = None if prediction.path is None else str(prediction.path)
        out: dict[str, Any] = {"path": path, "predictions": _pairs(prediction.answer)}
        if self.tta:
            out["tta"] = self.tta
            out["without_tta"] = _pairs(prediction.plain)
        out["error"] = prediction.error
        return out

    def csv_header(self) -> list[str]:
        pairs = [f"{n}_{i}" for i in range(1, self.k + 1) for n in ("class", "probability")]
        tta = ["class_without_tta", "probability_without_tta"] if self.tta else []
        return ["path", *pairs, *tta, "error"]

    def csv_row(self, prediction: Prediction) -> list[str]:
        cells = [str(c) for pair in prediction.answer or [] for c in pair] or [""] * (2 * self.k)
        if self.tta:
            cells += [str(c) for c in prediction.plain[0]] if prediction.plain else ["", ""]
        return [str(prediction.path or ""), *cells, prediction.error or ""]

    def table_columns(self) -> list[tuple[str, str]]:
        columns = [("file", "left"), ("class", "left"), ("probability", "right"), ("next", "left")]
        return columns + ([("without tta", "left")] if self.tta else [])

    def table_row(self, prediction: Prediction) -> list[str]:
        tta = [""] if self.tta else []
        if prediction.error:
            return [str(prediction.path or ""), "unreadable", "", prediction.error, *tta]
        (best, p), rest = prediction.answer[0], prediction.answer[1:]
        others = ", ".join(f"{c} {q:.4f}" for c, q in rest)
        if self.tta and prediction.plain:
            tta = [f"{prediction.plain[0][0]} {prediction.plain[0][1]:.4f}"]
        return [str(prediction.path or ""), best, f"{p:.4f}", others, *tta]


class LabelSet(NamedTuple):
    """A multi-label answer: the image's labels (the classes at or above their thresholds,
    in class order) and every class's probability, highest first."""

    labels: list[str]
    probabilities: list[tuple[str, float]]


class MultiLabel:
    """A set of labels per image: a sigmoid per class; each image answered by the classes at
    or above their thresholds (its labels, possibly none) and every class's probability,
    highest first (rounded to 6 decimals). CSV rows are ``path,labels`` with the labels
    space-separated, so a prediction file is a table ``zoo train --data`` reads."""

    task = "multi-label"

    def __init__(
        self, classes: list[str], thresholds: list[float] | None = None, tta: str | None = None
    ) -> None:
        self.classes = list(classes)
        self.thresholds = list(thresholds or [0.5] * len(self.classes))
        self.tta = tta

    @classmethod
    def of(cls, info: Any, top_k: int, tta: str | None) -> MultiLabel:
        """Every class is answered (``top_k`` does not cut a label set)."""
        return cls(list(info.classes), info.thresholds, tta)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def answers(self, probabilities: torch.Tensor) -> list[LabelSet]:
        out = []
        for row in probabilities.tolist():
            cuts = zip(self.classes, row, self.thresholds, strict=True)
            labels = [c for c, p, t in cuts if p >= t]
            ranked = sorted(zip(self.classes, row, strict=True), key=lambda cp: -cp[1])
            out.append(LabelSet(labels, [(c, round(p, 6)) for c, p in ranked]))
        return out

    def record(self, prediction: Prediction) -> dict[str, Any]:
        path = None if prediction.path is None else str(prediction.path)
        labels, pairs = prediction.answer or ([], [])
        out: dict[str, Any] = {"path": path, "labels": labels, "predictions": _pairs(pairs)}
        if self.tta:
            out["tta"] = self.tta
            out["labels_without_tta"] = (prediction.plain or ([], []))[0]
        out["error"] = prediction.error
        return out

    def csv_header(self) -> list[str]:
        return ["path", "labels"]

    def csv_row(self, prediction: Prediction) -> list[str]:
        labels = (prediction.answer or ([], []))[0]
        return [str(prediction.path or ""), " ".join(labels)]

    def table_columns(self) -> list[tuple[str, str]]:
        columns = [("file", "left"), ("labels", "left"), ("probabilities", "left")]
        return columns + ([("without tta", "left")] if self.tta else [])

    def table_row(self, prediction: Prediction) -> list[str]:
        tta = [""] if self.tta else []
        if prediction.error:
            return [str(prediction.path or ""), "unreadable", prediction.error, *tta]
        labels, pairs = prediction.answer
        shown = ", ".join(f"{c} {p:.4f}" for c, p in pairs[:5])
        if self.tta and prediction.plain:
            tta = [" ".join(prediction.plain[0]) or "(none)"]
        return [str(prediction.path or ""), " ".join(labels) or "(none)", shown, *tta]


def _pairs(answer: list[tuple[str, float]] | None) -> list[dict[str, Any]]:
    return [{"class": c, "probability": p} for c, p in answer or []]


# The output of each task, by the name a run records under ``task`` in its settings: built
# from the model's ``ModelInfo``, the classes to answer with and the TTA mode.
OUTPUTS: dict[str, Callable[[Any, int, str | None], Output]] = {
    "single-label": SingleLabel.of,
    "multi-label": MultiLabel.of,
}


def output_for(info: Any, top_k: int = 5, tta: str | None = None) -> Output:
    """The output of the run's task (``info``: its ``zoo.models.weights.ModelInfo``),
    answering with up to ``top_k`` classes."""
    from zoo.labeling.task import task_of

    task = task_of(info)
    if task not in OUTPUTS:
        known = ", ".join(sorted(OUTPUTS))
        raise ZooError(f"this zoo cannot predict with a {task!r} model (it knows {known})")
    return OUTPUTS[task](info, top_k, tta)
