"""Losses accept hard and soft targets and agree with their definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.plugins.components import resolve

# Compares floating-point results tightly: rerun under other CPU kernels by .ci/run.
pytestmark = pytest.mark.cpu_kernels

LOSSES = ["cross_entropy", "soft_target_cross_entropy", "bce", "focal"]


def build(spec: str, weight: torch.Tensor | None = None):
    return resolve("loss", spec).build(num_classes=5, weight=weight)


@pytest.fixture
def logits_targets() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)


@pytest.mark.parametrize("name", LOSSES)
def test_hard_and_one_hot_targets_agree(name: str, logits_targets) -> None:
    logits, y = logits_targets
    loss = build(name)
    hard = loss(logits, y)
    soft = loss(logits, F.one_hot(y, 5).float())
    assert hard.ndim == 0 and torch.isfinite(hard)
    assert hard.item() == pytest.approx(soft.item(), rel=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_flow(name: str, logits_targets) -> None:
    logits, y = logits_targets
    logits.requires_grad_(True)
    build(name)(logits, y).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_cross_entropy_matches_torch_and_smooths(logits_targets) -> None:
    logits, y = logits_targets
    assert build("ce")(logits, y) == pytest.approx(F.cross_entropy(logits, y).item())
    smoothed = build("cross_entropy:label_smoothing=0.1")(logits, y)
    assert smoothed == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item())


def test_focal_with_gamma_zero_is_cross_entropy(logits_targets) -> None:
    logits, y = logits_targets
    assert build("focal:gamma=0")(logits, y).item() == pytest.approx(
        F.cross_entropy(logits, y).item(), rel=1e-5
    )
    assert build("focal:gamma=2")(logits, y) < build("focal:gamma=0")(logits, y)


def test_class_weights_are_applied(logits_targets) -> None:
    logits, y = logits_targets
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert build("ce", weight)(logits, y).item() == pytest.approx(
        F.cross_entropy(logits, y, weight=weight).item(), rel=1e-6
    )


def test_bce_is_mean_over_classes(logits_targets) -> None:
    logits, y = logits_targets
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(y, 5).float())
    assert build("bce")(logits, y).item() == pytest.approx(expected.item(), rel=1e-6)
