"""timm's single-label classification losses (``timm.loss``) as zoo losses.

Names follow timm's loss factory (``create_classification_loss``): ``ce``, ``bce``, ``asl``,
``poly``; ``ce`` and ``bce`` are zoo built-in names, so they become ``timm_ce`` and ``timm_bce``.
On a multi-label run, ``asl`` is timm's ``AsymmetricLossMultiLabel``. Left out: ``jsd`` (it
needs batches split into augmented copies, which zoo does not make) and the multi-label-only
``twoway``, ``zlpr`` and ``db``.
Keywords use timm's names (``smoothing``, not ``label_smoothing``).
"""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register


def ce(smoothing: float = 0.0) -> Any:
    """timm's softmax cross-entropy: label smoothing for class indices, soft targets as given.

    Hard targets go through LabelSmoothingCrossEntropy (plain cross-entropy at smoothing=0), soft
    ones from mixup/cutmix through SoftTargetCrossEntropy, as timm's train script pairs them.
    """
    from zoo_timm.criteria import TimmCrossEntropy

    return TimmCrossEntropy(smoothing)


def bce(
    smoothing: float = 0.1,
    target_threshold: float | None = None,
    sum_classes: bool = False,
    pos_weight: float | None = None,
    weight: Any = None,
) -> Any:
    """timm's BinaryCrossEntropy: per-class sigmoid on one-hot (smoothed) or soft targets.

    target_threshold: binarize soft targets above it. sum_classes: sum over classes before the
    batch mean. Class weights come from --class-weights auto.
    """
    from timm.loss import BinaryCrossEntropy

    from zoo_timm.criteria import OnDevice

    return OnDevice(
        BinaryCrossEntropy(
            smoothing=smoothing,
            target_threshold=target_threshold,
            weight=weight,
            sum_classes=sum_classes,
            pos_weight=pos_weight,
        )
    )


def asl(
    gamma_pos: float = 1.0,
    gamma_neg: float = 4.0,
    eps: float | None = None,
    clip: float = 0.05,
    weight: Any = None,
    multi_label: bool = False,
) -> Any:
    """timm's Asymmetric Loss; multi-label runs: easy negatives down-weighted (Ridnik et al.).

    gamma_pos / gamma_neg: focusing of positive / negative terms. On a multi-label run
    (timm's AsymmetricLossMultiLabel): clip shifts negatives' probabilities by this margin,
    eps smooths each label towards 0.5 (default 0), and --class-weights auto gives each
    class's positive weight. On a single-label run (AsymmetricLossSingleLabel, class-index
    targets only, not after mixup/cutmix): eps is label smoothing (default 0.1); clip and
    class weights do not apply.
    """
    from zoo_timm.criteria import OnDevice

    if multi_label:
        from timm.loss import AsymmetricLossMultiLabel

        module = AsymmetricLossMultiLabel(
            gamma_neg=gamma_neg,
            gamma_pos=gamma_pos,
            clip=clip,
            smoothing=0.0 if eps is None else eps,
            pos_weight=weight,
        )
        return OnDevice(module)
    from timm.loss import AsymmetricLossSingleLabel

    if weight is not None:
        raise ValueError("asl takes class weights on multi-label runs only")
    return OnDevice(
        AsymmetricLossSingleLabel(
            gamma_pos=gamma_pos, gamma_neg=gamma_neg, eps=0.1 if eps is None else eps
        ),
        hard_only="asl",
    )


def poly(epsilon: float = 2.0, smoothing: float = 0.0) -> Any:
    """timm's Poly-1 cross-entropy, CE + epsilon * (1 - p_t); hard or soft targets."""
    from timm.loss import PolyCrossEntropy

    from zoo_timm.criteria import OnDevice

    return OnDevice(PolyCrossEntropy(epsilon=epsilon, smoothing=smoothing))


def register_losses(register: Register) -> None:
    from zoo_timm.names import zoo_name

    for name, factory in (("ce", ce), ("bce", bce), ("asl", asl), ("poly", poly)):
        register(zoo_name("loss", name), factory)
