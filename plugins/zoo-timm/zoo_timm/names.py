"""The zoo names of timm's components.

timm's components keep timm's own names (``resnet50``, ``lamb``, ``tanh``, ``asl``), so what a
timm user knows carries over. Where zoo's built-ins already use a name or alias, the timm
component gets the prefix ``timm_`` (``timm_adamw``, ``timm_cosine``, ``timm_mixup``): two plugins
registering one name make the bare name ambiguous, and zoo's defaults (``--loss cross_entropy
--optimizer adam --scheduler constant``) must keep resolving. ``tests/test_timm_plugin.py``
checks this table against the built-ins, so a new built-in name cannot silently collide.
"""

from __future__ import annotations

PREFIX = "timm_"

# Names and aliases of zoo's built-in components that timm also uses, by kind.
BUILTIN_NAMES: dict[str, frozenset[str]] = {
    "architecture": frozenset({"simplecnn"}),
    "augmentation": frozenset(
        {
            "hflip",
            "horizontal_flip",
            "vflip",
            "vertical_flip",
            "rotate",
            "rotation",
            "shift",
            "translate",
            "zoom",
            "shear",
            "affine",
            "brightness",
            "contrast",
            "channel_shift",
            "random_erasing",
            "erasing",
            "mixup",
            "cutmix",
        }
    ),
    "loss": frozenset(
        {
            "cross_entropy",
            "ce",
            "categorical_crossentropy",
            "soft_target_cross_entropy",
            "soft_ce",
            "bce",
            "binary_cross_entropy",
            "focal",
        }
    ),
    "optimizer": frozenset({"sgd", "adam", "adamw"}),
    "scheduler": frozenset({"constant", "step", "cosine", "plateau", "reduce_on_plateau"}),
}


def zoo_name(kind: str, timm_name: str) -> str:
    """timm's name, lowercased, with ``timm_`` in front when a zoo built-in already uses it."""
    name = timm_name.lower()
    return PREFIX + name if name in BUILTIN_NAMES[kind] else name
