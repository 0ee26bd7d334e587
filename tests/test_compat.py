"""A run directory written by zoo 0.1 before the layout change (tests/data/run-zoo-0.1: made
with ``zoo train --arch "simplecnn:widths=[4],hidden=8" --image-size 8 --epochs 2
--batch-size 128 --ema --keep 1 --aug hflip`` at commit d30f066) still loads, evaluates and
resumes, and the resumed run ends where today's uninterrupted run ends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

import zoo
from zoo.train import TrainConfig, Trainer

OLD_RUN = Path(__file__).parent / "data" / "run-zoo-0.1"


def test_a_run_written_by_zoo_0_1_loads_evaluates_and_resumes(cli, tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    model = zoo.load(run)
    assert model.classes == [str(d) for d in range(10)] and model.image_size == (8, 8)

    report = json.loads(cli("eval", run, "--json", "--no-plots").stdout)
    assert report["count"] == 359 and report["epoch"] == 2

    # zoo 0.1 trained in fp32 and the contiguous format; on CPUs with AMX zoo now defaults to
    # bf16 and channels-last: the resume keeps 0.1's arithmetic, as the straight run is told.
    cli("train", "--resume", run, "--epochs", "3")
    straight = tmp_path / "straight"
    Trainer(
        TrainConfig(
            arch="simplecnn:widths=[4],hidden=8",
            image_size=8,
            epochs=3,
            batch_size=128,
            ema=True,
            keep=1,
            aug=["hflip"],
            channels_last=False,
            precision="fp32",
            out=str(straight),
        )
    ).fit()
    for name in ("model.safetensors", "model_ema.safetensors", "checkpoints/last.safetensors"):
        resumed, fresh = load_file(str(run / name)), load_file(str(straight / name))
        assert resumed.keys() == fresh.keys(), name
        assert all(torch.equal(resumed[k], fresh[k]) for k in fresh), name


def test_a_resume_keeps_the_format_and_precision_auto_chose(small_run: Path) -> None:
    from zoo.device.defaults import use_channels_last
    from zoo.device.precision import resolve_precision
    from zoo.models.loading import load
    from zoo.train.state import PRECISION_NAMES, kept_runtime

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    net = load(small_run).net
    last = small_run / "checkpoints" / "last.safetensors"
    auto = TrainConfig(image_size=8)
    kept = kept_runtime(auto, last, cpu)  # as this machine's "auto" chose them
    assert kept.channels_last == use_channels_last(None, cpu, net)
    assert kept.precision == PRECISION_NAMES[resolve_precision("auto", cpu, net)]
    given = auto.replace(channels_last=not kept.channels_last, precision="fp32")
    assert kept_runtime(given, last, cpu) == given  # what the command line says wins
    assert kept_runtime(auto, last, cuda) == auto  # another kind of device: "auto" again
    # zoo 0.1 recorded nothing: its "auto" was contiguous fp32 on a CPU.
    old = OLD_RUN / "checkpoints" / "last.safetensors"
    assert (kept_runtime(auto, old, cpu).channels_last, kept_runtime(auto, old, cpu).precision) == (
        False,
        "fp32",
    )
    assert kept_runtime(auto, old, cuda) == auto
