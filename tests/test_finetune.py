"""Fine-tuning controls: ``--freeze-epochs`` (resumable, with EMA), ``--layer-decay`` (timm's
layer grouping) and ``zoo lr-find`` (whose suggestion trains well)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.plugins.build import add_plugin
from zoo.train.config import TrainConfig
from zoo.train.lrfind import caveat, suggestion
from zoo.train.trainer import Trainer

SMALL = ["--image-size", "16", "--batch-size", "8"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("finetune-data") / "images"
    return write_image_folder(root, {"cats": 8, "dogs": 8, "owls": 8})


@pytest.mark.cpu_kernels
def test_freezing_resumes_exactly_with_ema(folder: Path, tmp_path: Path) -> None:
    def config(out: Path, epochs: int, **changes: object) -> TrainConfig:
        return TrainConfig(
            data=str(folder), arch="test_resnet", image_size=16, batch_size=8, epochs=epochs,
            freeze_epochs=1, ema=True, lr=0.01, out=str(out), **changes,
        )  # fmt: skip

    Trainer(config(tmp_path / "full", 2)).fit()
    Trainer(config(tmp_path / "part", 1)).fit()
    after_one = load_file(str(tmp_path / "part" / "model.safetensors"))
    Trainer(config(tmp_path / "part", 2, resume=str(tmp_path / "part"))).fit()
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    part = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all(torch.equal(full[k], part[k]) for k in full)
    for name in ("model_ema.safetensors",):
        a, b = (load_file(str(tmp_path / r / name)) for r in ("full", "part"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    # The resumed epoch trained the backbone: it thawed at the right epoch.
    assert not torch.equal(after_one["conv1.0.weight"], part["conv1.0.weight"])


class _NoHead(torch.nn.Module):
    """A network that does not say which layer is its classifier."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Plugin:
    @zoo.hookimpl
    def zoo_register_architectures(self, register) -> None:  # type: ignore[no-untyped-def]
        register("nohead", lambda num_classes, in_chans, image_size: _NoHead(num_classes))


def test_freezing_and_layer_decay_refuse_networks_they_cannot_split(
    cli, folder: Path, tmp_path: Path
) -> None:
    add_plugin(_Plugin(), "nohead-plugin")
    out = tmp_path / "run"
    result = cli("train", "--data", folder, "--arch", "nohead", "--freeze-epochs", "1",
                 "--out", out, *SMALL, code=2)  # fmt: skip
    assert result.stderr.strip() == (
        "error: --freeze-epochs: zoo cannot find the classifier of architecture "
        "'nohead-plugin:nohead' (it needs timm's get_classifier() or "
        "pretrained_cfg['classifier']), so it cannot freeze the rest"
    )
    result = cli("train", "--arch", "simplecnn", "--layer-decay", "0.7", "--out", out, code=2)
    assert result.stderr.strip() == (
        "error: --layer-decay: architecture 'zoo:simplecnn' has no layer grouping (timm's "
        "architectures have one)"
    )
    assert not out.exists()


def test_layer_decay_gives_each_layer_its_rate(cli, folder: Path, tmp_path: Path) -> None:
    from zoo.plugins.components import resolve
    from zoo.train.parts import param_groups

    arch = resolve("architecture", "test_vit")
    net = arch.build(num_classes=3, in_chans=3, image_size=(32, 32))
    groups = param_groups(net, 0.05, 0.5, arch, lr=1e-3)
    rates = sorted({g["lr"] for g in groups})
    assert rates[-1] == pytest.approx(1e-3) and len(rates) > 3
    assert rates[0] == pytest.approx(1e-3 * 0.5 ** (len(rates) - 1))
    names = {id(p): n for n, p in net.named_parameters()}
    for g in groups:
        if g["weight_decay"]:  # zoo's rule: no decay on norms, biases, embeddings
            assert all(p.ndim > 1 and "pos_embed" not in names[id(p)] for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    out = tmp_path / "vit"
    cli("train", "--data", folder, "--arch", "test_vit", "--layer-decay", "0.5", "--epochs",
        "1", "--lr", "0.002", "--image-size", "32", "--batch-size", "8", "--out", out)  # fmt: skip
    record = json.loads((out / "metrics.jsonl").read_text())
    assert record["lr"] == pytest.approx(0.002)  # the top layer's rate


def test_lr_find_suggests_a_rate_that_trains_well(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    plot = tmp_path / "lr.png"
    args = ["--arch", "simplecnn", "--image-size", "16"]
    result = cli("lr-find", *args, "--steps", "60", "--json", "--out", plot)
    found = json.loads(result.stdout)
    lrs, losses, suggested = found["lrs"], found["losses"], found["suggested_lr"]
    assert len(lrs) == len(losses) and lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-7)
    assert found["stopped"] == "diverged" and len(lrs) < 60  # stopped early
    lowest = min(range(len(lrs) // 10, len(lrs)), key=losses.__getitem__)
    assert suggested == pytest.approx(lrs[lowest] / 10)  # a decade below the lowest loss
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert f"wrote {plot}" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["lr.png"]  # a throwaway model: no run
    out = tmp_path / "run"
    cli("train", *args, "--epochs", "5", "--lr", str(suggested), "--out", out)
    best = json.loads((out / "summary.json").read_text())["best"]
    assert best["value"] >= 0.95, (suggested, best)


@pytest.mark.cpu_kernels  # which rate of the sweep had the lowest loss
def test_settings_that_defeat_themselves_are_warned_about(cli, folder: Path, tmp_path) -> None:
    # Frozen for every epoch: the backbone never trains.
    result = cli(
        "train", "--data", folder, "--arch", "test_resnet", *SMALL, "--epochs", "1",
        "--freeze-epochs", "3", "--out", tmp_path / "run",
    )  # fmt: skip
    assert (
        "warning: --freeze-epochs 3 covers all 1 epochs: only the classifier trains, the "
        "backbone never does"
    ) in " ".join(result.stdout.split())
    # A sweep too coarse to find a descent (ten steps over eight decades): its suggestion is
    # the start of the sweep, and it says so.
    args = ["lr-find", "--image-size", "8", "--steps", "10", "--no-plot"]
    found = json.loads(cli(*args, "--json").stdout)
    assert found["suggested_lr"] == pytest.approx(found["lrs"][1] / 10)
    assert found["warning"] == caveat(found["lrs"], found["losses"]) is not None
    assert cli(*args).stdout.splitlines()[1:] == [found["warning"]]
    # A sweep monitors nothing: it has nothing to say about validation data.
    assert cli(*args, "--val-split", "0").stderr == ""


def test_the_caveat_of_a_sweep_is_a_lowest_loss_at_its_first_rate() -> None:
    rates = [10.0**e for e in range(-7, 3)]
    falls = [2.3, 2.2, 2.0, 1.5, 1.0, 0.8, 0.7, 1.5, 3.0, 9.0]
    rises = [2.3, 2.2, 2.25, 2.3, 2.4, 2.6, 3.0, 4.0, 6.0, 9.0]
    assert caveat(rates, falls) is None and suggestion(rates, falls) == pytest.approx(1e-1 / 10)
    assert suggestion(rates, rises) == pytest.approx(1e-6 / 10)
    assert caveat(rates, rises) == (
        "warning: the loss was lowest at the first rate considered (1.00e-06) and only rose "
        "after it, so the suggestion is the start of the sweep, not a rate the loss fell at; "
        "sweep in finer steps (more --steps) or from a lower --start-lr"
    )
