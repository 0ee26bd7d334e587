"""Batched augmentation on the training device: the machinery every augmentation plugin uses.

Augmentations take float images ``[B, C, H, W]`` in ``[0, 1]`` and targets, and draw their
randomness per sample. Geometric ones expose ``affine_matrices(n, height, width, device)``:
per-sample 3x3 matrices mapping output pixel coordinates (origin at the image centre) to input
coordinates. ``compose`` multiplies the matrices of consecutive geometric augmentations so that
rotation, shift, zoom, shear and flips cost one ``grid_sample`` per batch, as one random affine
per sample. The built-in augmentations themselves are in ``zoo.builtins.transforms``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]
Augmentation = Callable[[torch.Tensor, torch.Tensor], Batch]

FILL_MODES = {"nearest": "border", "reflect": "reflection", "constant": "zeros"}


def uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    """``n`` draws from U(low, high) on ``device``, from torch's generator for that device."""
    return torch.rand(n, device=device) * (high - low) + low


def identity_matrices(n: int, device: torch.device) -> torch.Tensor:
    """``n`` 3x3 identity matrices ``[n, 3, 3]``."""
    return torch.eye(3, device=device).repeat(n, 1, 1)


class Geometric:
    """Base of the fusable augmentations: subclasses provide ``affine_matrices``.

    ``fill`` says how pixels from outside the image are filled (``nearest``, ``reflect`` or
    ``constant``); None means the augmentation never samples outside (a flip), so it fuses
    with any fill.
    """

    fill: str | None = "nearest"

    def affine_matrices(
        self, n: int, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Batch:
        n, _, h, w = images.shape
        matrices = self.affine_matrices(n, h, w, images.device)
        return warp(images, matrices, self.fill or "nearest"), targets


def warp(images: torch.Tensor, matrices: torch.Tensor, fill: str) -> torch.Tensor:
    """Resample images through per-sample pixel-space matrices (output -> input)."""
    n, _, h, w = images.shape
    # Pixel coordinates (centred) to grid_sample's normalised ones: x_norm = x_pix * 2 / w, so
    # theta = S @ M @ S^-1 with S = diag(2/w, 2/h, 1). Scaled with Python numbers: a tensor
    # made from a list would be copied from the host, which waits for the GPU every step.
    theta = matrices[:, :2].clone()
    theta[:, 0, 1] *= h / w
    theta[:, 1, 0] *= w / h
    theta[:, 0, 2] *= 2.0 / w
    theta[:, 1, 2] *= 2.0 / h
    grid = F.affine_grid(theta.to(images.dtype), [n, 1, h, w], align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode=FILL_MODES[fill], align_corners=False
    )


class FusedGeometric(Geometric):
    """Consecutive geometric augmentations applied as one matrix product and one warp."""

    def __init__(self, parts: Sequence[Geometric]) -> None:
        self.parts = list(parts)
        self.fill = next((p.fill for p in self.parts if _fill(p) is not None), "nearest")

    def affine_matrices(
        self, n: int, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        # Output -> input: applying A then B samples x at M_A @ M_B @ p.
        m = self.parts[0].affine_matrices(n, height, width, device)
        for part in self.parts[1:]:
            m = m @ part.affine_matrices(n, height, width, device)
        return m


def _fill(aug: object) -> str | None:
    """An augmentation's fill mode (plugins' geometric augmentations may not declare one)."""
    return getattr(aug, "fill", "nearest")


def compose(augmentations: Sequence[Augmentation]) -> list[Augmentation]:
    """Fuse runs of geometric augmentations (with compatible fill modes) into one warp each."""
    out: list[Augmentation] = []
    run: list[Geometric] = []

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            out.append(FusedGeometric(run))
        run.clear()

    for aug in augmentations:
        if isinstance(aug, Geometric) or hasattr(aug, "affine_matrices"):
            fills = {_fill(p) for p in run} - {None}
            fill = _fill(aug)
            if fills and fill is not None and fill not in fills:
                flush()
            run.append(aug)  # type: ignore[arg-type]
        else:
            flush()
            out.append(aug)
    flush()
    return out


def soft_targets(targets: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot ``[B, K]`` for int64 targets; soft targets pass through."""
    if targets.ndim == 2:
        return targets.to(dtype)
    return F.one_hot(targets, num_classes).to(dtype)
