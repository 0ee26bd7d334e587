"""Adapters that run timm's augmentations inside zoo's contract: float ``[B, C, H, W]`` images
in ``[0, 1]`` on the training device in, the same out; int64 or soft targets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from zoo.errors import ZooError

Batch = tuple[torch.Tensor, torch.Tensor]


class PilPolicy:
    """RandAugment, AutoAugment or AugMix from a timm config string, applied per sample.

    timm's policies operate on PIL images, so each sample goes to uint8 on the CPU, through the
    policy and back. timm sizes some operations from the image (translation in pixels), so one
    transform is built per image size, as timm's ``create_transform`` does.
    """

    def __init__(self, kind: str, policy: str) -> None:
        from zoo_timm.augmentations import POLICY_FAMILIES

        family = str(policy).split("-")[0]
        if family not in POLICY_FAMILIES[kind]:
            accepted = " or ".join(f"{p}..." for p in POLICY_FAMILIES[kind])
            raise ZooError(
                f"augmentation 'timm:{kind}': policy {policy!r} is not a {kind} config "
                f"(expected {accepted})"
            )
        self.kind, self.policy = kind, str(policy)
        self._transforms: dict[tuple[int, int, int], Any] = {}
        self._transform(3, 224, 224)  # parse the config now: a bad string fails before training

    def _transform(self, channels: int, height: int, width: int) -> Any:
        key = (channels, height, width)
        if key not in self._transforms:
            from timm.data.auto_augment import (
                augment_and_mix_transform,
                auto_augment_transform,
                rand_augment_transform,
            )

            hparams: dict[str, Any] = {
                "translate_const": int(min(height, width) * 0.45),
                "img_mean": 128 if channels == 1 else (128, 128, 128),
            }
            build = {"rand_augment": rand_augment_transform, "auto_augment": auto_augment_transform}
            if self.kind == "augmix":
                hparams["translate_pct"] = 0.3
            make = build.get(self.kind, augment_and_mix_transform)
            try:
                self._transforms[key] = make(self.policy, hparams)
            except (AssertionError, ValueError, KeyError, IndexError) as exc:
                raise ZooError(
                    f"augmentation 'timm:{self.kind}': invalid policy {self.policy!r}"
                    + (f" ({exc})" if str(exc) else "")
                ) from None
        return self._transforms[key]

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        from PIL import Image

        _, channels, height, width = images.shape
        if channels not in (1, 3):
            raise ValueError(f"{self.kind} works on 1- or 3-channel images, not {channels}")
        transform = self._transform(channels, height, width)
        pixels = images.detach().mul(255).round_().clamp_(0, 255).to("cpu", torch.uint8)
        arrays = pixels[:, 0].numpy() if channels == 1 else pixels.permute(0, 2, 3, 1).numpy()
        out = np.stack([np.asarray(transform(Image.fromarray(a))) for a in arrays])
        result = torch.from_numpy(out)
        result = result.unsqueeze(1) if channels == 1 else result.permute(0, 3, 1, 2)
        return result.to(images.device, images.dtype).div_(255), targets


class BatchErasing:
    """timm's RandomErasing on zoo's ``[0, 1]`` images.

    timm erases normalized images (``const`` means the mean colour, noise is in std units).
    zoo's augmentations run before normalization, so the batch is standardized with its own
    per-channel mean and std, erased by timm, and mapped back; pixels timm left alone are
    returned unchanged, erased ones clamped to ``[0, 1]``.
    """

    def __init__(self, mode: str = "const", **options: Any) -> None:
        if mode not in ("const", "rand", "pixel"):
            raise ValueError(f"mode must be const, rand or pixel, got {mode!r}")
        if not 0 <= options.get("probability", 0.5) <= 1:
            raise ValueError("probability must be in [0, 1]")
        self.mode, self.options = mode, options

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        from timm.data.random_erasing import RandomErasing

        mean = images.mean(dim=(0, 2, 3), keepdim=True)
        std = images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
        before = (images - mean) / std
        after = RandomErasing(mode=self.mode, device=images.device, **self.options)(before.clone())
        erased = (after * std + mean).clamp_(0, 1)
        return torch.where(after != before, erased, images), targets


class TimmMixup:
    """timm's Mixup/CutMix on zoo batches.

    timm wants an even batch; an odd last sample is left unmixed (its target smoothed the same
    way). Targets must be class indices: timm one-hot encodes them.
    """

    def __init__(self, num_classes: int, **options: Any) -> None:
        from timm.data import Mixup

        if options.get("mode", "batch") not in ("batch", "pair", "elem"):
            raise ValueError(f"mode must be batch, pair or elem, got {options['mode']!r}")
        minmax = options.get("cutmix_minmax")
        if minmax is not None:
            if len(minmax) != 2:
                raise ValueError("cutmix_minmax takes [low, high]")
            options["cutmix_minmax"] = tuple(float(v) for v in minmax)
        if options["mixup_alpha"] <= 0 and options["cutmix_alpha"] <= 0 and minmax is None:
            raise ValueError("set mixup_alpha or cutmix_alpha above 0 (or cutmix_minmax)")
        self.num_classes = num_classes
        self.smoothing = float(options.get("label_smoothing", 0.1))
        self.mixup = Mixup(num_classes=num_classes, **options)

    def _unmixed(self, targets: torch.Tensor) -> torch.Tensor:
        from timm.data.mixup import mixup_target

        return mixup_target(targets, self.num_classes, 1.0, self.smoothing)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        if targets.ndim != 1:
            raise ValueError(
                "timm_mixup needs class-index targets; put it before other mixing augmentations"
            )
        n = images.shape[0]
        even = n - n % 2
        if even == 0:
            return images, self._unmixed(targets)
        x = images.clone()
        mixed, soft = self.mixup(x[:even], targets[:even])
        x[:even] = mixed
        if even < n:
            soft = torch.cat([soft, self._unmixed(targets[even:])])
        return x, soft
