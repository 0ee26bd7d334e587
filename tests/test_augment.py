"""Augmentations: per-sample randomness, value ranges, fusion, soft targets."""

from __future__ import annotations

import pytest
import torch

from zoo.data.augment import FusedGeometric, compose, warp
from zoo.plugins.components import resolve

# Compares floating-point results tightly: rerun under other CPU kernels by .ci/run.
pytestmark = pytest.mark.cpu_kernels


def build(spec: str, num_classes: int = 4):
    return resolve("augmentation", spec).build(num_classes=num_classes)


def batch(n: int = 16, c: int = 3, h: int = 12, w: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, c, h, w, generator=g), torch.randint(0, 4, (n,), generator=g)


ALL = [
    "hflip",
    "vflip",
    "rotate:degrees=30",
    "shift:fraction=0.2",
    "zoom:amount=0.3",
    "shear:degrees=20",
    "affine:degrees=10,shift=[0.1,0.2],zoom=0.1,shear=5",
    "brightness:amount=0.5",
    "contrast:amount=0.5",
    "channel_shift:amount=0.2",
    "random_erasing:p=1.0",
    "mixup:alpha=0.4",
    "cutmix",
]


@pytest.mark.parametrize("spec", ALL)
def test_shapes_ranges_and_per_sample_randomness(spec: str) -> None:
    torch.manual_seed(0)
    x, y = batch()
    mixing = spec.startswith(("mixup", "cutmix"))
    # Identical samples must come out differently (mixing needs distinct partners).
    x2 = x if mixing else x[:1].repeat(16, 1, 1, 1)
    out, targets = build(spec)(x2, y)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    differing = {tuple(o.flatten().tolist()[:50]) for o in out}
    assert len(differing) > 1, f"{spec} drew the same randomness for every sample"
    if mixing:
        assert targets.shape == (16, 4)
        assert len({round(v, 4) for v in targets.max(dim=1).values.tolist()}) > 1
        assert torch.allclose(targets.sum(dim=1), torch.ones(16))
    else:
        assert torch.equal(targets, y)


def test_same_seed_same_result() -> None:
    aug = build("affine:degrees=20,zoom=0.2")
    x, y = batch()
    torch.manual_seed(3)
    a, _ = aug(x, y)
    torch.manual_seed(3)
    b, _ = aug(x, y)
    assert torch.equal(a, b)


def test_flip_alone_is_exact_and_fused_flip_matches() -> None:
    x, y = batch()
    torch.manual_seed(0)
    flipped, _ = build("hflip:p=1.0")(x, y)
    assert torch.equal(flipped, x.flip(-1))
    fused = FusedGeometric([build("hflip:p=1.0"), build("vflip:p=1.0")])
    out, _ = fused(x, y)
    assert torch.allclose(out, x.flip(-1).flip(-2), atol=1e-5)


def test_consecutive_geometric_augmentations_fuse_into_one_warp() -> None:
    augs = [build("hflip"), build("rotate"), build("zoom"), build("brightness"), build("shear")]
    composed = compose(augs)
    assert len(composed) == 3 and isinstance(composed[0], FusedGeometric)
    assert len(composed[0].parts) == 3
    # Different fill modes cannot share one warp.
    assert len(compose([build("rotate:fill=reflect"), build("zoom:fill=constant")])) == 2


def test_fused_warp_equals_sequential_warps_for_the_same_matrices() -> None:
    # A smooth image, so that resampling once or twice differs only a little.
    r = torch.linspace(-1, 1, 16)
    x = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) * 2).expand(4, 1, 16, 16).contiguous()
    rot = build("rotate:degrees=30")
    shift = build("shift:fraction=0.1")
    torch.manual_seed(5)
    m1 = rot.affine_matrices(4, 16, 16, x.device)
    m2 = shift.affine_matrices(4, 16, 16, x.device)
    once = warp(x, m1 @ m2, "nearest")  # rotate, then shift
    twice = warp(warp(x, m1, "nearest"), m2, "nearest")
    inner = (slice(None), slice(None), slice(4, 12), slice(4, 12))  # away from border fill
    assert (once - twice)[inner].abs().max() < 0.03  # one resampling vs two
    wrong_order = warp(warp(x, m2, "nearest"), m1, "nearest")
    assert (once - wrong_order)[inner].abs().max() > 0.1


def test_rotation_by_90_degrees_is_a_rotation() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 2] = 1.0  # top-centre pixel
    m = torch.eye(3)[None]
    m[0, :2, :2] = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    out = warp(x, m, "constant")
    # The matrix maps output to input pixels: output (x, y) reads input (-y, x), so the top
    # centre (0, -2) lands at the left centre (-2, 0), row 2 column 0.
    assert out[0, 0].argmax().item() == 10 and out[0, 0, 2, 0] == pytest.approx(1.0)


def distinct(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i: every pixel (i + 1) / 10 and class i, so a mix can be traced to its parts."""
    values = (torch.arange(n, dtype=torch.float32) + 1) / 10
    return values.view(n, 1, 1, 1).expand(n, 1, 10, 10).contiguous(), torch.arange(n)


def test_mixup_targets_carry_the_weights_the_images_were_mixed_with() -> None:
    torch.manual_seed(0)
    x, y = distinct()
    out, soft = build("mixup:alpha=1.0", num_classes=8)(x, y)
    assert soft.sum(dim=1) == pytest.approx(torch.ones(8))
    mixed = 0
    for i in range(8):
        assert torch.allclose(out[i], out[i, 0, 0, 0])  # a blend of two constant images
        others = soft[i].clone()
        others[i] = 0
        if others.max() == 0:  # its own partner: unchanged
            assert out[i, 0, 0, 0] == pytest.approx(x[i, 0, 0, 0].item())
            continue
        mixed += 1
        j, lam = int(others.argmax()), soft[i, i].item()
        assert soft[i, j] == pytest.approx(1 - lam)
        expected = lam * x[i, 0, 0, 0] + (1 - lam) * x[j, 0, 0, 0]
        assert out[i, 0, 0, 0] == pytest.approx(expected.item(), abs=1e-6)
    assert mixed >= 6


def test_cutmix_targets_are_the_pasted_areas() -> None:
    torch.manual_seed(0)
    x, y = distinct()
    out, soft = build("cutmix:alpha=1.0", num_classes=8)(x, y)
    pasted_somewhere = 0
    for i in range(8):
        changed = out[i] != x[i]
        area = changed.float().mean().item()
        if area == 0:  # an empty box, or a box from itself
            assert soft[i, i] == pytest.approx(1.0)
            continue
        pasted_somewhere += 1
        (source,) = out[i][changed].unique().tolist()  # one partner's constant
        j = round(source * 10) - 1
        assert soft[i, j] == pytest.approx(area, abs=1e-6)
        assert soft[i, i] == pytest.approx(1 - area, abs=1e-6)
        rows, cols = changed[0].nonzero(as_tuple=True)  # the pasted region is one box
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box.item() == changed.sum().item()
    assert pasted_somewhere >= 4


def test_bad_parameters_are_reported_with_the_component() -> None:
    from zoo.errors import ZooError

    with pytest.raises(
        ZooError,
        match=r"augmentation 'zoo:rotate' failed to build: "
        r"ValueError: fill must be one of",
    ):
        build("rotate:fill=wrap")
