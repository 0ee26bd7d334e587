"""timm's augmentation policies, random erasing and mixup/cutmix as zoo augmentations.

RandAugment, AutoAugment and AugMix take timm's configuration strings (``rand-m9-mstd0.5``,
``original``, ``augmix-m5-w3-d2``), exactly as timm's ``--aa`` flag. They run on PIL images, so
zoo applies them one sample at a time on the CPU: expect them to cost more than zoo's batched
built-ins. Their randomness comes from Python's ``random`` and numpy, which zoo reseeds every
epoch, so runs stay reproducible.
"""

from __future__ import annotations

from typing import Any

from zoo.plugins.hookspecs import Register

# Each policy name and the prefix of timm configuration strings it accepts.
POLICY_FAMILIES: dict[str, tuple[str, ...]] = {
    "rand_augment": ("rand",),
    "auto_augment": ("original", "originalr", "v0", "v0r", "3a"),
    "augmix": ("augmix",),
}


def rand_augment(policy: str = "rand-m9-mstd0.5") -> Any:
    """timm's RandAugment from a config string: rand-m9-mstd0.5, rand-m7-n3-inc1...

    m: magnitude (0-10), n: ops per image, mstd: magnitude noise, inc1: increasing severity.
    Per sample, on PIL images; 1- and 3-channel images.
    """
    from zoo_timm.policies import PilPolicy

    return PilPolicy("rand_augment", policy)


def auto_augment(policy: str = "original") -> Any:
    """timm's AutoAugment: policy original, originalr, v0, v0r or 3a (with -mstd0.5 etc.).

    Per sample, on PIL images; 1- and 3-channel images.
    """
    from zoo_timm.policies import PilPolicy

    return PilPolicy("auto_augment", policy)


def augmix(policy: str = "augmix-m5-w3-d2") -> Any:
    """timm's AugMix from a config string: augmix-m5-w3-d2 (magnitude, width, depth)...

    Per sample, on PIL images; 1- and 3-channel images. Without timm's JSD splits.
    """
    from zoo_timm.policies import PilPolicy

    return PilPolicy("augmix", policy)


def random_erasing(
    probability: float = 0.5,
    mode: str = "const",
    min_area: float = 0.02,
    max_area: float = 1 / 3,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    min_count: int = 1,
    max_count: int | None = None,
) -> Any:
    """timm's RandomErasing: erase rectangles per sample, filled as if the batch were normalized.

    mode: const (the batch's mean colour), rand (one random colour per box) or pixel (per-pixel
    noise), drawn in units of the batch's per-channel std, as timm does after normalization.
    """
    from zoo_timm.policies import BatchErasing

    return BatchErasing(
        probability=probability,
        mode=mode,
        min_area=min_area,
        max_area=max_area,
        min_aspect=min_aspect,
        max_aspect=max_aspect,
        min_count=min_count,
        max_count=max_count,
    )


def mixup(
    num_classes: int,
    mixup_alpha: float = 1.0,
    cutmix_alpha: float = 0.0,
    cutmix_minmax: list[float] | None = None,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    mode: str = "batch",
    correct_lam: bool = True,
    label_smoothing: float = 0.1,
) -> Any:
    """timm's Mixup/CutMix: mix pairs of samples, smoothed soft targets (one object for both).

    mixup_alpha / cutmix_alpha: Beta parameters, 0 disables (cutmix only: mixup_alpha=0,
    cutmix_alpha=1). switch_prob: chance of cutmix when both are on. mode: batch, pair or elem
    (one lambda per batch, pair or sample). Needs class-index targets, so put it before other
    mixing augmentations.
    """
    from zoo_timm.policies import TimmMixup

    return TimmMixup(
        num_classes=num_classes,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        cutmix_minmax=cutmix_minmax,
        prob=prob,
        switch_prob=switch_prob,
        mode=mode,
        correct_lam=correct_lam,
        label_smoothing=label_smoothing,
    )


def register_augmentations(register: Register) -> None:
    from zoo_timm.names import zoo_name

    for name, factory in (
        ("rand_augment", rand_augment),
        ("auto_augment", auto_augment),
        ("augmix", augmix),
        ("random_erasing", random_erasing),
        ("mixup", mixup),
    ):
        register(zoo_name("augmentation", name), factory)
