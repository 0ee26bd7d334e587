"""The task of a run: what its labels are, how logits become probabilities, which loss and
metrics fit it. Chosen once from the data (or ``--task``), recorded as ``task`` in the run's
settings (only for a task other than single-label, so single-label runs' files are those of
every run before tasks existed), and asked by training, evaluation, prediction and export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError, did_you_mean, shown

if TYPE_CHECKING:
    import torch

    from zoo.labeling.eval_loop import EvalResult

SINGLE = "single-label"


class SingleLabelTask:
    """One class per image: int64 class indices, softmax, cross-entropy, accuracy and the
    confusion matrix's macro precision/recall/F1."""

    name = SINGLE
    default_loss = "cross_entropy"
    default_monitor = "val_accuracy"
    # The validation metrics, each recorded as val_NAME (and ema_val_NAME with --ema).
    val_metrics: tuple[str, ...] = ("loss", "accuracy", "precision", "recall", "f1")
    keeps_scores = False  # whether its metrics need every image's scores (the loop keeps them)

    def encode(self, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        """A batch's labels as the loss takes them: class indices (or mixup's soft targets)."""
        return targets

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)

    def correct(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The batch's images counted right (``train_accuracy``)."""
        from zoo.labeling.metrics import top_class_correct

        return top_class_correct(logits, targets)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss the evaluation loop reports when it is given none."""
        import torch.nn.functional as F

        return F.cross_entropy(logits, targets)

    def epoch_metrics(self, result: EvalResult, thresholds: Any = None) -> dict[str, float]:
        """``val_metrics``' values (without the prefix) from one pass over the validation split."""
        from zoo.labeling.metrics import from_confusion

        metrics = from_confusion(result.confusion)
        return {"loss": result.loss, **{m: metrics[m] for m in self.val_metrics[1:]}}

    def thresholds(self, result: EvalResult, threshold: float | None) -> list[float] | None:
        """What the weights record to turn probabilities into answers (none: the top class)."""
        return None


TASKS: dict[str, Any] = {SINGLE: SingleLabelTask()}

# What --task accepts, normalised to the name a run records.
ALIASES = {"single": SINGLE, SINGLE: SINGLE}


def task_named(name: str) -> Any:
    """The task of a recorded name (``zoo.labeling.TASKS``)."""
    if name not in TASKS:
        known = ", ".join(sorted(TASKS))
        raise ZooError(f"this zoo does not know the task {name!r} (it knows {known})")
    return TASKS[name]


def parse_task(text: str | None) -> str | None:
    """``--task``'s value as the name a run records (None: chosen from the data)."""
    if text is None:
        return None
    name = ALIASES.get(str(text).strip().lower())
    if name is None:
        choices = sorted(ALIASES)
        raise ZooError(
            f"--task {shown(text)}: not a task{did_you_mean(str(text), choices)} "
            f"(choose from {', '.join(choices)})"
        )
    return name


def task_of(info: Any) -> str:
    """The run's task (``info``: a ``ModelInfo``, or a run's settings as a mapping): ``task``
    in the settings it was trained with (single-label when absent, as every run before
    multi-label runs existed)."""
    config = info if isinstance(info, dict) else getattr(info, "config", None)
    return str((config or {}).get("task") or SINGLE)
