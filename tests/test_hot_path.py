"""What the training loop does every step, kept to a few device ops with no host reads: the
metric accumulator, the fused uint8 normalization, and the pixel-space warp."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.augment import warp


def test_warp_maps_pixel_space_matrices_on_non_square_images() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 2, 6, 10, generator=g)
    matrices = torch.eye(3).repeat(3, 1, 1)
    matrices[:, :2] += torch.randn(3, 2, 3, generator=g) * 0.3
    # The same pixel-space -> normalised-space conversion written as a matrix product.
    s = torch.diag(torch.tensor([2 / 10, 2 / 6, 1.0]))
    theta = (s @ matrices @ torch.linalg.inv(s))[:, :2]
    grid = F.affine_grid(theta, [3, 1, 6, 10], align_corners=False)
    expected = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    assert torch.allclose(warp(images, matrices, "nearest"), expected, atol=1e-5)
