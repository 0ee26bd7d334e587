"""Built-in losses. Each accepts hard and soft targets; ``weight`` is filled in by zoo from
``--class-weights``."""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register, hookimpl


def cross_entropy(label_smoothing: float = 0.0, weight: Any = None) -> Any:
    """Softmax cross-entropy (Keras' categorical cross-entropy), optional label smoothing."""
    from zoo.builtins.criteria import CrossEntropy

    return CrossEntropy(label_smoothing, weight)


def soft_target_cross_entropy(weight: Any = None) -> Any:
    """Cross-entropy against soft targets (mixup/cutmix); hard targets are made one-hot."""
    from zoo.builtins.criteria import SoftTargetCrossEntropy

    return SoftTargetCrossEntropy(weight)


def bce(
    label_smoothing: float = 0.0,
    pos_weight: float | None = None,
    weight: Any = None,
    multi_label: bool = False,
) -> Any:
    """Binary cross-entropy with logits, a sigmoid per class; multi-label runs' default loss.

    Takes one-hot targets or label vectors; on a multi-label run --class-weights auto gives
    each class's positive weight."""
    from zoo.builtins.criteria import BinaryCrossEntropy

    if multi_label and weight is not None:  # each class's negatives over its positives
        return BinaryCrossEntropy(label_smoothing, weight, None)
    return BinaryCrossEntropy(label_smoothing, pos_weight, weight)


def focal(gamma: float = 2.0, label_smoothing: float = 0.0, weight: Any = None) -> Any:
    """Focal loss: down-weights easy examples by (1 - p)^gamma; for imbalanced data."""
    from zoo.builtins.criteria import FocalLoss

    return FocalLoss(gamma, label_smoothing, weight)


@hookimpl
def zoo_register_losses(register: Register) -> None:
    register("cross_entropy", cross_entropy, aliases=("ce", "categorical_crossentropy"))
    register("soft_target_cross_entropy", soft_target_cross_entropy, aliases=("soft_ce",))
    register("bce", bce, aliases=("binary_cross_entropy",))
    register("focal", focal)
