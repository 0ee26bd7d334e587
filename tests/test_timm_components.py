"""timm's optimizers, schedulers, losses and augmentations under zoo's contract: built from
zoo's keywords, state that JSON checkpoints hold, hard and soft targets, per-sample randomness
that zoo's reseeding makes reproducible."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from timm.scheduler import create_scheduler_v2

import zoo
from zoo.errors import ZooError
from zoo.train.parts import param_groups
from zoo.train.state import flatten_state, unflatten_state


def _one_per_class() -> list[str]:
    """One registered name per distinct timm optimizer class (the variants differ in defaults).

    apex and bitsandbytes optimizers need CUDA and those packages; kron torch.compiles its
    preconditioner on the first step (about 15 s on a CPU), so it is only built, below.
    """
    from timm.optim import get_optimizer_info

    seen: dict[object, str] = {}
    for c in zoo.list_components("optimizer"):
        info = get_optimizer_info(c.name.removeprefix("timm_"))
        if c.plugin == "timm" and not isinstance(info.opt_class, str) and "kron" not in c.name:
            seen.setdefault(info.opt_class, c.name)
    return sorted(seen.values())


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


def _steps(net: torch.nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # optimizers that draw noise (kron) use the global generator
    for _ in range(n):
        net(torch.randn(6, 4, generator=g)).square().mean().backward()
        opt.step()
        opt.zero_grad()


def _json_round_trip(state: dict) -> dict:
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps(flatten_state(state, "state", tensors))
    copies = {k: v.clone() for k, v in tensors.items()}  # as written to disk
    return unflatten_state(json.loads(text), copies)


def test_every_cpu_optimizer_steps_and_resumes_from_json_state() -> None:
    names = _one_per_class()
    assert len(names) > 25
    extra = ["lamb", "lion", "lamb:lookahead=true", "timm_adamw:betas=[0.9,0.95]", "adafactorbv"]
    for name in dict.fromkeys([*names, *extra]):
        net = _net()
        opt = zoo.build("optimizer", name, params=param_groups(net, 0.05), lr=0.01)
        assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0], name
        _steps(net, opt, 2, seed=1)
        saved_weights = {k: v.clone() for k, v in net.state_dict().items()}
        saved = _json_round_trip(opt.state_dict())
        _steps(net, opt, 2, seed=2)
        expected = {k: v.clone() for k, v in net.state_dict().items()}

        net.load_state_dict(saved_weights)
        resumed = zoo.build("optimizer", name, params=param_groups(net, 0.05), lr=0.01)
        resumed.load_state_dict(saved)
        _steps(net, resumed, 2, seed=2)
        for key, value in net.state_dict().items():
            assert torch.allclose(value, expected[key], atol=1e-6), (name, key)


@pytest.mark.filterwarnings("ignore:It is highly recommended to have 'opt_einsum'")
def test_kron_builds_from_zoos_parameter_groups() -> None:
    opt = zoo.build("optimizer", "kron", params=param_groups(_net(), 0.05), lr=0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert json.dumps(flatten_state(opt.state_dict(), "optimizer", {}))


def test_cuda_only_optimizers_fail_with_a_message_naming_them() -> None:
    with pytest.raises(ZooError, match=r"optimizer 'timm:bnbadamw' failed to build: .*CUDA"):
        zoo.build("optimizer", "bnbadamw", params=param_groups(_net(), 0.0), lr=0.01)


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))]}], lr=0.1)


SCHEDULES = [
    ("timm_cosine", "cosine", {"warmup_epochs": 1, "min_lr": 0.001}),
    ("tanh", "tanh", {}),
    ("timm_step", "step", {"decay_epochs": 1}),
    ("multistep", "multistep", {"decay_milestones": [1, 2]}),
    ("poly", "poly", {"warmup_epochs": 1}),
    ("wsd", "wsd", {}),
    ("rsqrt", "rsqrt", {"warmup_epochs": 1}),
    ("timm_constant", "constant", {"warmup_epochs": 1}),
]


@pytest.mark.parametrize("on_epochs", [True, False], ids=["per-epoch", "per-update"])
@pytest.mark.parametrize(("name", "sched", "options"), SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_follow_timms_training_loop_and_resume_exactly(
    name: str, sched: str, options: dict, on_epochs: bool
) -> None:
    epochs, steps = 4, 3
    text = ",".join(f"{k}={json.dumps(v).replace(' ', '')}" for k, v in options.items())
    spec = f"{name}:{text + ',' if text else ''}step_on_epochs={'true' if on_epochs else 'false'}"

    def build() -> tuple[torch.optim.Optimizer, object]:
        opt = _optimizer()
        return opt, zoo.build(
            "scheduler", spec, optimizer=opt, epochs=epochs, steps_per_epoch=steps
        )

    opt, scheduler = build()
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    # timm's own loop: step_update(n) after each update, step(epoch + 1) after each epoch.
    ref_opt = _optimizer()
    ref, _ = create_scheduler_v2(
        ref_opt,
        sched=sched,
        num_epochs=epochs,
        step_on_epochs=on_epochs,
        updates_per_epoch=steps,
        **options,
    )
    ours, timms = [opt.param_groups[0]["lr"]], [ref_opt.param_groups[0]["lr"]]
    for epoch in range(epochs):
        for step in range(steps):
            opt.step()
            scheduler.step()
            ours.append(opt.param_groups[0]["lr"])
            ref.step_update(epoch * steps + step + 1)
            if step == steps - 1:
                ref.step(epoch + 1)
            timms.append(ref_opt.param_groups[0]["lr"])
    assert ours == pytest.approx(timms, abs=1e-12)
    assert len(set(ours)) > 1

    # Saved after 5 updates as JSON, restored into fresh objects: the same rates follow.
    opt, scheduler = build()
    for _ in range(5):
        opt.step()
        scheduler.step()
    opt_state, sched_state = (
        _json_round_trip(opt.state_dict()),
        _json_round_trip(scheduler.state_dict()),
    )
    opt, scheduler = build()
    opt.load_state_dict(opt_state)
    scheduler.load_state_dict(sched_state)
    rest = [opt.param_groups[0]["lr"]]
    for _ in range(epochs * steps - 5):
        opt.step()
        scheduler.step()
        rest.append(opt.param_groups[0]["lr"])
    assert rest == pytest.approx(ours[5:], abs=1e-12)


def test_losses_take_hard_and_soft_targets() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    hard = torch.tensor([0, 2, 1, 2])
    soft = torch.nn.functional.one_hot(hard, 3).float() * 0.8 + 0.2 / 3
    for name in ("timm_ce", "timm_ce:smoothing=0.1", "timm_bce", "poly", "asl"):
        loss_fn = zoo.build("loss", name, num_classes=3)
        value = loss_fn(logits, hard)
        assert value.ndim == 0 and torch.isfinite(value)
        value.backward()
        if name != "asl":
            assert torch.isfinite(loss_fn(logits, soft))
    ce = zoo.build("loss", "timm_ce")
    assert torch.allclose(ce(logits, hard), torch.nn.functional.cross_entropy(logits, hard))
    assert torch.allclose(
        ce(logits, torch.nn.functional.one_hot(hard, 3).float()), ce(logits, hard), atol=1e-6
    )
    with pytest.raises(ValueError, match="asl needs class-index targets"):
        zoo.build("loss", "asl")(logits, soft)


def test_bce_takes_class_weights() -> None:
    weight = torch.tensor([1.0, 2.0, 0.5])
    loss_fn = zoo.build("loss", "timm_bce:smoothing=0.0", weight=weight)
    logits, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.nn.functional.one_hot(targets, 3).float(), weight
    )
    assert torch.allclose(loss_fn(logits, targets), expected)


def _seeded(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "spec",
    [
        "rand_augment",
        "rand_augment:policy=rand-m7-n3-mstd0.5-inc1",
        "auto_augment:policy=v0",
        "augmix",
        "timm_random_erasing:probability=1.0,mode=pixel",
        "timm_mixup:mixup_alpha=0.8,cutmix_alpha=1.0,mode=elem",
    ],
)
def test_augmentations_keep_the_contract_and_reseeding_repeats_them(
    spec: str, channels: int
) -> None:
    _seeded(0)
    images = torch.randint(0, 256, (5, channels, 16, 16)).float() / 255
    targets = torch.tensor([0, 1, 2, 0, 1])
    aug = zoo.build("augmentation", spec, num_classes=3)
    _seeded(1)
    out, out_targets = aug(images.clone(), targets)
    _seeded(1)
    again, _ = aug(images.clone(), targets)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, again)
    assert not torch.equal(out, images)
    if "mixup" in spec:  # soft targets, rows summing to one; the odd last sample unmixed
        assert out_targets.shape == (5, 3)
        assert torch.allclose(out_targets.sum(1), torch.ones(5))
        assert out_targets[4].argmax() == 1 and torch.equal(out[4], images[4])
    else:
        assert torch.equal(out_targets, targets)


def test_erasing_changes_only_the_erased_boxes() -> None:
    _seeded(0)
    images = torch.rand(4, 3, 16, 16)
    out, _ = zoo.build("augmentation", "timm_random_erasing:probability=1.0")(
        images.clone(), torch.zeros(4, dtype=torch.long)
    )
    changed = (out != images).any(dim=1)
    assert changed.flatten(1).any(dim=1).all()  # every sample erased
    assert (changed.flatten(1).float().mean(dim=1) < 0.5).all()  # at most a third each
    # const mode fills with the batch's mean colour, as timm's zeros after normalization.
    mean = images.mean(dim=(0, 2, 3))
    box = out[0][:, changed[0]]
    assert torch.allclose(box, mean[:, None].expand_as(box), atol=1e-5)


def test_augmentation_errors_are_clear() -> None:
    with pytest.raises(ZooError, match="policy 'original' is not a rand_augment config"):
        zoo.build("augmentation", "rand_augment:policy=original")
    with pytest.raises(ZooError, match="invalid policy 'rand-q9'"):
        zoo.build("augmentation", "rand_augment:policy=rand-q9")
    mixup = zoo.build("augmentation", "timm_mixup", num_classes=3)
    with pytest.raises(ValueError, match="before other mixing augmentations"):
        mixup(torch.rand(4, 3, 8, 8), torch.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match="1- or 3-channel"):
        zoo.build("augmentation", "augmix")(torch.rand(2, 2, 8, 8), torch.tensor([0, 1]))
