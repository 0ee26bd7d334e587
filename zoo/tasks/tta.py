"""Test-time augmentation: run the model on a few views of each image and average the class
probabilities.

The views are taken from the normalized input at the model's size. Flips and bilinear
resizes commute with the per-channel normalization, so this equals augmenting the raw pixels.
Views run one after another, so memory stays that of one batch.

- ``flip``: the image and its mirror image (2 views). This suits classes that do not depend
  on left and right, such as photos of objects, but not digits or text.
- ``crops``: the image and its four corner crops covering 7/8 of each side, resized back (5 views).
- ``flip+crops``: both, and the mirror images of the crops (10 views).

``auto`` (what ``--tta`` alone asks for) takes the views the run trained with, as fastai's TTA
augments with the training transforms: mirror images when it trained with ``hflip``, crops
when with ``zoom`` (or ``affine`` with a zoom), both when with both. A view the model never saw
in training can only hurt it (a mirrored digit is another glyph). Weights that do not say how
they were trained (a timm folder, a Hub model) get ``flip``, which ImageNet training uses.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError, did_you_mean, shown

MODES = ("flip", "crops", "flip+crops")
AUTO = "auto"
CROP = 7 / 8


def check_mode(mode: str, *, auto: bool = False) -> str:
    """The mode (``auto`` too where ``auto``), or a one-line error naming the valid ones."""
    valid = (AUTO, *MODES) if auto else MODES
    if mode not in valid:
        raise ZooError(
            f"unknown TTA mode {shown(mode)}{did_you_mean(mode, valid)}; choose {'|'.join(valid)}"
        )
    return mode


def resolve_mode(mode: str, config: dict[str, Any] | None, source: str) -> str:
    """The views of ``mode``; for ``auto``, those the run trained with (``config``: the run's
    saved settings, None for weights that do not say), or a one-line error when it trained
    with none of them."""
    if mode != AUTO:
        return check_mode(mode)
    if not config or "aug" not in config:
        return "flip"
    flips, crops = trained_views(config.get("aug") or [])
    if flips or crops:
        return "+".join(name for name, used in (("flip", flips), ("crops", crops)) if used)
    raise ZooError(
        f"--tta: {source} trained without flips (hflip) or zooms (zoom), so every view of "
        "test-time augmentation is one it never learned; choose views with --tta-mode "
        f"{'|'.join(MODES)}"
    )


def trained_views(augs: list[str]) -> tuple[bool, bool]:
    """Whether training augmentations ``augs`` (spec strings) mirrored images, and whether they
    zoomed them: what makes flip and crop views ones the model has learned."""
    from zoo.plugins.build import get_registry
    from zoo.plugins.specs import parse_spec

    registry, flips, crops = get_registry(), False, False
    for text in augs:
        try:
            spec = parse_spec(str(text), kind="augmentation")
            name = registry.resolve("augmentation", spec.ref).qualified
        except ZooError:  # a plugin no longer installed: its augmentation says nothing
            continue
        flips |= name == "zoo:hflip" and spec.params.get("p", 0.5) != 0
        zoom = spec.params.get("amount", 0.1) if name == "zoo:zoom" else None
        if name == "zoo:affine":
            zoom = spec.params.get("zoom", 0.0)
        crops |= zoom is not None and zoom != 0
    return flips, crops


def view_count(mode: str) -> int:
    return {"flip": 2, "crops": 5, "flip+crops": 10}[check_mode(mode)]


def _crops(x: torch.Tensor) -> list[torch.Tensor]:
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * CROP)), max(1, round(w * CROP))
    out = [x]
    for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw)):
        crop = x[..., top : top + ch, left : left + cw]
        out.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
    return out


def views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The augmented views of a ``[B, C, H, W]`` batch; the first is the batch itself."""
    check_mode(mode)
    base = _crops(x) if "crops" in mode else [x]
    if "flip" in mode:
        return base + [v.flip(-1) for v in base]
    return base


class TTA(nn.Module):
    """A model whose output is the logits of its probabilities averaged over the views (the
    log of softmax probabilities, the logit of a multi-label run's sigmoids), so the
    evaluation loop's loss and metrics apply to the averaged prediction."""

    def __init__(self, model: nn.Module, mode: str, task: Any = None) -> None:
        """``task``: the run's (``zoo.labeling.task``), whose activation is averaged
        (default: single-label's softmax)."""
        from zoo.labeling.task import SINGLE, task_named

        super().__init__()
        self.model, self.mode = model, check_mode(mode)
        self.task = task or task_named(SINGLE)

    def probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities of the image alone, probabilities averaged over the views)``."""
        plain = total = None
        all_views = views(x, self.mode)
        for view in all_views:
            probs = self.task.activate(self.model(view))
            if plain is None:
                plain, total = probs, probs.clone()
            else:
                total += probs
        assert plain is not None and total is not None
        return plain, total / len(all_views)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, mean = self.probabilities(x)
        return self.task.logits_of(mean)
