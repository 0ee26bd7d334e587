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
MULTI = "multi-label"


class SingleLabelTask:
    """One class per image: int64 class indices, softmax, cross-entropy, accuracy and the
    confusion matrix's macro precision/recall/F1."""

    name = SINGLE
    default_arch = "simplecnn"
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

    def logits_of(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Logits whose activation gives ``probabilities`` (averaged TTA views, judged as a
        model's output): their log."""
        import torch

        return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()

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

    def thresholds(
        self, result: EvalResult | None, threshold: float | None, num_classes: int
    ) -> list[float] | None:
        """What the weights record to turn probabilities into answers (none: the top class)."""
        return None

    def class_weights(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """``--class-weights auto``: inverse class frequency, normalised so a balanced dataset
        gets all ones (a class without training images gets 1: it never weighs a loss term)."""
        import torch

        counts = torch.bincount(labels, minlength=num_classes).double()
        return (counts.sum() / (num_classes * counts.clamp_min(1))).float()

    def check(self, data: Any, note: Any) -> None:
        """Warnings about the training data (``data``: the run's ``DataSplits``)."""


class MultiLabelTask:
    """A set of labels per image (possibly empty): a ``{0, 1}`` vector per image, a sigmoid
    per class, binary cross-entropy; validation reports mAP, micro and macro F1, subset
    accuracy and the Hamming loss at per-class thresholds, which the weights record."""

    name = MULTI
    # Several objects anywhere in the image: features pooled over every position count each
    # object wherever it is (a flattened map learns each place apart), a fourth block so that
    # the pooled features see whole objects (46 px of a 64 px image rather than 22), and
    # batch normalization, which let that deeper network learn within the same epochs.
    default_arch = "simplecnn:widths=[32,64,128,256],norm=true,pool=max"
    default_loss = "bce"
    default_monitor = "val_map"
    val_metrics: tuple[str, ...] = ("loss", "map", "f1_micro", "f1_macro", "exact", "hamming")
    keeps_scores = True

    def encode(self, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Label vectors, float: from class indices (data of one label per image), from label
        sets as a streamed split's batches hold them (int64 ``[B, M]`` class indices padded
        with -1), or as given (an in-memory split's, mixed by mixup and cutmix too)."""
        import torch
        import torch.nn.functional as F

        if targets.ndim == 1:
            return F.one_hot(targets.long(), num_classes).float()
        if not targets.is_floating_point():
            index = torch.where(targets < 0, num_classes, targets.long())
            vectors = torch.zeros(targets.shape[0], num_classes + 1, device=targets.device)
            return vectors.scatter_(1, index, 1.0)[:, :num_classes]
        return targets.float()

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def logits_of(self, probabilities: torch.Tensor) -> torch.Tensor:
        """The logit of each probability (clamped off 0 and 1)."""
        import torch

        tiny = torch.finfo(probabilities.dtype).eps
        return probabilities.clamp(tiny, 1 - tiny).logit()

    def correct(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each image's share of labels right at probability 0.5 (``train_accuracy``: one
        minus the Hamming loss)."""
        return ((logits > 0) == (targets > 0.5)).float().mean(dim=1).sum()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())

    def epoch_metrics(self, result: EvalResult, thresholds: Any = None) -> dict[str, float]:
        from zoo.labeling.label_sets import (
            DEFAULT_THRESHOLD,
            at_thresholds,
            average_precision,
            mean_ap,
        )

        probs, targets = self.scores(result)
        chosen = thresholds or [DEFAULT_THRESHOLD] * targets.shape[1]
        found = at_thresholds(probs, targets, chosen)
        values = {"loss": result.loss, "map": mean_ap(average_precision(probs, targets))}
        return {**values, **{m: found[m] for m in self.val_metrics[2:]}}

    def thresholds(
        self, result: EvalResult | None, threshold: float | None, num_classes: int
    ) -> list[float]:
        """``threshold`` for every class when given; else each class's threshold chosen on the
        validation images to maximise its F1 (0.5 without validation images)."""
        from zoo.labeling.label_sets import DEFAULT_THRESHOLD, choose_thresholds

        if threshold is not None or result is None or result.logits is None:
            return [DEFAULT_THRESHOLD if threshold is None else float(threshold)] * num_classes
        return choose_thresholds(*self.scores(result))

    def class_weights(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """``--class-weights auto``: each class's positive weight, its negatives over its
        positives in training (BCE's ``pos_weight``: rare labels weigh as much as their
        absence; a class without positives gets 1)."""
        import torch

        vectors = self.encode(labels, num_classes).double()
        positives = vectors.sum(dim=0)
        ratio = (vectors.shape[0] - positives) / positives.clamp_min(1)
        return torch.where(positives > 0, ratio, torch.ones_like(ratio)).float()

    def check(self, data: Any, note: Any) -> None:
        """Warn about a class no training image has: the network only learns to deny it."""
        from zoo.data.splits import label_tensor, split_labels

        labels = split_labels(data.train)
        if labels is None:
            return
        counts = self.encode(label_tensor(labels), len(data.classes)).sum(dim=0)
        missing = [c for c, n in zip(data.classes, counts.tolist(), strict=True) if n == 0]
        if missing:
            shown_names = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            note(
                f"warning: {len(missing)} class(es) never appear in the training split: "
                f"{shown_names}; the model cannot learn to predict them"
            )

    @staticmethod
    def scores(result: EvalResult) -> tuple[Any, Any]:
        """Every image's probabilities and label vector, as float64 numpy arrays."""
        assert result.logits is not None and result.targets is not None
        probs = result.logits.double().sigmoid().numpy()
        return probs, result.targets.double().numpy()


TASKS: dict[str, Any] = {SINGLE: SingleLabelTask(), MULTI: MultiLabelTask()}

# What --task accepts, normalised to the name a run records.
ALIASES = {"single": SINGLE, SINGLE: SINGLE, "multilabel": MULTI, MULTI: MULTI}


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


def choose_task(given: str | None, multi_label: bool, where: str, folders: bool) -> str:
    """The run's task: the data's own (label sets make it multi-label), or ``--task``'s.
    Multi-label data cannot train as single-label; single-label data trains as multi-label
    (each image's label set holds its one label), except class folders, where an image
    can only ever have one label."""
    if given is None:
        return MULTI if multi_label else SINGLE
    if given == SINGLE and multi_label:
        raise ZooError(
            f"--task single: {where} holds several labels per image; drop --task to train on "
            "them as multi-label"
        )
    if given == MULTI and not multi_label and folders:
        raise ZooError(
            f"--task multilabel: {where} is a tree of class folders, which gives each image "
            "one label; use a table whose label cells hold several labels (delim=, default "
            "a space)"
        )
    return given


def task_of(info: Any) -> str:
    """The run's task (``info``: a ``ModelInfo``, or a run's settings as a mapping): ``task``
    in the settings it was trained with (single-label when absent, as every run before
    multi-label runs existed)."""
    config = info if isinstance(info, dict) else getattr(info, "config", None)
    return str((config or {}).get("task") or SINGLE)
