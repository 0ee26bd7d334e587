"""What the training loop does every step, kept to a few device ops with no host reads: the
metric accumulator, the fused uint8 normalization, and the pixel-space warp."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoo.data.augment import warp
from zoo.labeling.metrics import Accumulator
from zoo.models.inference import Normalizer

# Compares floating-point results tightly: rerun under other CPU kernels by .ci/run.
pytestmark = pytest.mark.cpu_kernels


def test_accumulator_sums_batches_and_flags_non_finite_losses() -> None:
    meter = Accumulator(torch.device("cpu"))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    meter.update(torch.tensor(0.5), logits, torch.tensor([0, 1, 1]))  # 2 of 3 right
    soft = torch.tensor([[0.9, 0.1]])  # soft targets count by their argmax
    meter.update(torch.tensor(2.0), torch.tensor([[1.0, 0.0]]), soft)
    values = meter.read()
    assert values["count"] == 4 and values["accuracy"] == 3 / 4
    assert math.isclose(values["loss"], (0.5 * 3 + 2.0) / 4) and values["nonfinite"] == 0
    meter.update(torch.tensor(float("nan")), logits, torch.tensor([0, 1, 0]))
    assert meter.read()["nonfinite"] == 1
    meter.reset()
    assert meter.read() == {"loss": 0.0, "accuracy": 0.0, "count": 1.0, "nonfinite": 0.0}


def test_normalizer_takes_uint8_pixels_in_one_op() -> None:
    norm = Normalizer((0.2, 0.5, 0.7), (0.3, 0.25, 0.1), torch.device("cpu"), channels_last=True)
    pixels = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    direct = norm(pixels)
    via_float = norm(pixels.float() / 255)
    assert direct.dtype == torch.float32 and direct.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(direct, via_float, rtol=0, atol=1e-5)


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
