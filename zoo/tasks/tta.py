"""Test-time augmentation: run the model on a few views of each image and average the class
probabilities.

The views are taken from the normalized input at the model's size. Flips and bilinear
resizes commute with the per-channel normalization, so this equals augmenting the raw pixels.
Views run one after another, so memory stays that of one batch.

- ``flip``: the image and its mirror image (2 views). This suits classes that do not depend
  on left and right, such as photos of objects, but not digits or text.
- ``crops``: the image and its four corner crops covering 7/8 of each side, resized back (5 views).
- ``flip+crops``: both, and the mirror images of the crops (10 views).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError, did_you_mean, shown

MODES = ("flip", "crops", "flip+crops")
CROP = 7 / 8


def check_mode(mode: str) -> str:
    """The mode, or a one-line error naming the valid ones."""
    if mode not in MODES:
        raise ZooError(
            f"unknown TTA mode {shown(mode)}{did_you_mean(mode, MODES)}; choose {'|'.join(MODES)}"
        )
    return mode


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
    """A model whose output is the log of its probabilities averaged over the views, so the
    evaluation loop's cross-entropy, accuracy and calibration apply to the averaged prediction."""

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        self.model, self.mode = model, check_mode(mode)

    def probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities of the image alone, probabilities averaged over the views)``."""
        plain = total = None
        all_views = views(x, self.mode)
        for view in all_views:
            probs = self.model(view).float().softmax(dim=1)
            if plain is None:
                plain, total = probs, probs.clone()
            else:
                total += probs
        assert plain is not None and total is not None
        return plain, total / len(all_views)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, mean = self.probabilities(x)
        return mean.clamp_min(torch.finfo(mean.dtype).tiny).log()
