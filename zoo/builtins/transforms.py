"""The built-in augmentations (imported only when one is built): Keras ImageDataGenerator's
flips, rotation, shift, zoom and shear, brightness, contrast and channel shift, random erasing,
mixup and cutmix. Each draws its randomness per sample on the images' device; the geometric ones
are fused into one warp per batch by ``zoo.data.augment.compose``.
"""

from __future__ import annotations

import math

import torch

from zoo.data.augment import (
    FILL_MODES,
    Batch,
    Geometric,
    identity_matrices,
    soft_targets,
    uniform,
)
from zoo.errors import shown


def _check_fill(fill: str) -> str:
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be one of {', '.join(FILL_MODES)}, got {shown(fill)}")
    return fill


class Flip(Geometric):
    """Mirror each sample with probability p (horizontally or vertically)."""

    fill = None  # a mirror never samples outside the image: it fuses with any fill mode

    def __init__(self, horizontal: bool, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.horizontal, self.p = horizontal, p

    def _mask(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.rand(n, device=device) < self.p

    def affine_matrices(
        self, n: int, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        m = identity_matrices(n, device)
        sign = 1.0 - 2.0 * self._mask(n, device).float()
        m[:, 0 if self.horizontal else 1, 0 if self.horizontal else 1] = sign
        return m

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        # Alone, a flip is an exact index operation: no resampling.
        mask = self._mask(images.shape[0], images.device).view(-1, 1, 1, 1)
        return torch.where(mask, images.flip(-1 if self.horizontal else -2), images), targets


class RandomAffine(Geometric):
    """Keras ImageDataGenerator geometry: rotation, shift, zoom and shear in one matrix."""

    def __init__(
        self,
        degrees: float = 0.0,
        shift: tuple[float, float] = (0.0, 0.0),
        zoom: tuple[float, float] = (1.0, 1.0),
        shear: float = 0.0,
        fill: str = "nearest",
    ) -> None:
        if degrees < 0 or shear < 0 or min(shift) < 0:
            raise ValueError("degrees, shift and shear must not be negative")
        if not 0 < zoom[0] <= zoom[1]:
            raise ValueError(f"zoom range must satisfy 0 < low <= high, got {zoom}")
        self.degrees, self.shift, self.zoom, self.shear = degrees, shift, zoom, shear
        self.fill = _check_fill(fill)

    def affine_matrices(
        self, n: int, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        m = identity_matrices(n, device)
        if self.degrees:
            a = torch.deg2rad(uniform(n, -self.degrees, self.degrees, device))
            rot = identity_matrices(n, device)
            rot[:, 0, 0], rot[:, 0, 1] = torch.cos(a), -torch.sin(a)
            rot[:, 1, 0], rot[:, 1, 1] = torch.sin(a), torch.cos(a)
            m = m @ rot
        if self.shear:
            s = torch.deg2rad(uniform(n, -self.shear, self.shear, device))
            sh = identity_matrices(n, device)
            sh[:, 0, 1] = -torch.sin(s)
            sh[:, 1, 1] = torch.cos(s)
            m = m @ sh
        if self.zoom != (1.0, 1.0):
            z = identity_matrices(n, device)
            z[:, 0, 0] = uniform(n, *self.zoom, device)
            z[:, 1, 1] = uniform(n, *self.zoom, device)
            m = m @ z
        if any(self.shift):
            t = identity_matrices(n, device)
            t[:, 0, 2] = uniform(n, -self.shift[0], self.shift[0], device) * width
            t[:, 1, 2] = uniform(n, -self.shift[1], self.shift[1], device) * height
            m = t @ m
        return m


# --- photometric ----------------------------------------------------------------------------


class Photometric:
    """Base of the intensity changes that scale each sample by its own factor, drawn from
    ``[1 - amount, 1 + amount]``; subclasses say how the factor applies."""

    def __init__(self, amount: float = 0.2) -> None:
        if not 0 <= amount < 1:
            raise ValueError(f"amount must be in [0, 1), got {amount}")
        self.amount = amount

    def apply(self, images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """``images`` changed by ``factors`` ``[B, 1, 1, 1]``."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        f = uniform(images.shape[0], 1 - self.amount, 1 + self.amount, images.device)
        return self.apply(images, f.view(-1, 1, 1, 1)).clamp_(0, 1), targets


class Brightness(Photometric):
    """Multiply each sample by a factor drawn from [1 - amount, 1 + amount]."""

    def apply(self, images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        return images * factors


class Contrast(Photometric):
    """Scale each sample's deviation from its mean by a factor in [1 - amount, 1 + amount]."""

    def apply(self, images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return (images - mean) * factors + mean


class ChannelShift:
    """Add a random offset in [-amount, amount] to each channel (or to all channels at once)."""

    def __init__(self, amount: float = 0.1, per_channel: bool = True) -> None:
        if not 0 <= amount <= 1:
            raise ValueError(f"amount must be in [0, 1], got {amount}")
        self.amount, self.per_channel = amount, per_channel

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        n, c = images.shape[:2]
        shape = (n, c if self.per_channel else 1, 1, 1)
        shift = (torch.rand(shape, device=images.device) * 2 - 1) * self.amount
        return (images + shift).clamp_(0, 1), targets


def _boxes(
    n: int, h: int, w: int, area: torch.Tensor, ratio: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Per-sample boolean masks ``[n, 1, h, w]`` of random boxes with the given area fraction
    and aspect ratio, placed uniformly (clipped to the image)."""
    bh = (torch.sqrt(area * h * w / ratio)).clamp(1, h)
    bw = (torch.sqrt(area * h * w * ratio)).clamp(1, w)
    top = torch.rand(n, device=device) * (h - bh + 1)
    left = torch.rand(n, device=device) * (w - bw + 1)
    top, left = top.floor(), left.floor()
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = (
        (rows >= top.view(-1, 1, 1))
        & (rows < (top + bh.round()).view(-1, 1, 1))
        & (cols >= left.view(-1, 1, 1))
        & (cols < (left + bw.round()).view(-1, 1, 1))
    )
    return inside.unsqueeze(1)


class RandomErasing:
    """Erase a random rectangle per sample (with probability p), filled with noise or a value."""

    def __init__(
        self,
        p: float = 0.25,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: str | float = "random",
    ) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError("scale must be within (0, 1] and ratio positive, low <= high")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"value must be 'random' or a number in [0, 1], got {shown(value)}")
        self.p, self.scale, self.ratio, self.value = p, scale, ratio, value

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        n, _, h, w = images.shape
        dev = images.device
        area = uniform(n, *self.scale, dev)
        ratio = torch.exp(uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), dev))
        mask = _boxes(n, h, w, area, ratio, dev) & (torch.rand(n, device=dev) < self.p).view(
            -1, 1, 1, 1
        )
        fill = (
            torch.rand_like(images)
            if self.value == "random"
            else torch.full_like(images, float(self.value))
        )
        return torch.where(mask, fill, images), targets


# --- label-mixing ---------------------------------------------------------------------------


def _beta(alpha: float, n: int, device: torch.device) -> torch.Tensor:
    concentration = torch.full((n,), float(alpha), device=device)
    # Without validation: checking the parameters reads a device tensor on the host.
    beta = torch.distributions.Beta(concentration, concentration, validate_args=False)
    return beta.sample()


class Mixup:
    """Blend each sample with a random partner: x = l*x_i + (1-l)*x_j, l ~ Beta(alpha, alpha)
    per sample (applied with probability p); targets become soft labels."""

    def __init__(self, num_classes: int, alpha: float = 0.2, p: float = 1.0) -> None:
        if alpha <= 0 or not 0 <= p <= 1:
            raise ValueError("alpha must be positive and p in [0, 1]")
        self.num_classes, self.alpha, self.p = num_classes, alpha, p

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        n, dev = images.shape[0], images.device
        lam = _beta(self.alpha, n, dev)
        lam = torch.where(torch.rand(n, device=dev) < self.p, lam, torch.ones_like(lam))
        partner = torch.randperm(n, device=dev)
        y = soft_targets(targets, self.num_classes, images.dtype)
        l4 = lam.view(-1, 1, 1, 1).to(images.dtype)
        l2 = lam.view(-1, 1).to(y.dtype)
        return images * l4 + images[partner] * (1 - l4), y * l2 + y[partner] * (1 - l2)


class CutMix:
    """Paste a random box from a partner sample (area 1 - l, l ~ Beta(alpha, alpha)) per sample;
    targets are mixed by the pasted area."""

    def __init__(self, num_classes: int, alpha: float = 1.0, p: float = 1.0) -> None:
        if alpha <= 0 or not 0 <= p <= 1:
            raise ValueError("alpha must be positive and p in [0, 1]")
        self.num_classes, self.alpha, self.p = num_classes, alpha, p

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        n, _, h, w = images.shape
        dev = images.device
        area = 1 - _beta(self.alpha, n, dev)
        mask = _boxes(n, h, w, area, torch.ones(n, device=dev), dev)
        mask &= (torch.rand(n, device=dev) < self.p).view(-1, 1, 1, 1)
        partner = torch.randperm(n, device=dev)
        pasted = mask.float().mean(dim=(1, 2, 3)).view(-1, 1)
        y = soft_targets(targets, self.num_classes, images.dtype)
        mixed_images = torch.where(mask, images[partner], images)
        return mixed_images, y * (1 - pasted.to(y.dtype)) + y[partner] * pasted.to(y.dtype)
