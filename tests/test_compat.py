"""A run directory written by zoo 0.1 before the layout change (tests/data/run-zoo-0.1: made
with ``zoo train --arch "simplecnn:widths=[4],hidden=8" --image-size 8 --epochs 2
--batch-size 128 --ema --keep 1 --aug hflip`` at commit d30f066) still loads, evaluates and
resumes, and the resumed run ends where today's uninterrupted run ends.

The stored run's two epochs were computed on the CPU that recorded it; this machine may take
other kernels (AVX-512, AVX2, AMX, Arm, oneDNN's own dispatch), which sum in another order. So
loading is compared bit for bit (no arithmetic), the evaluation is compared with what zoo 0.1
recorded (the same predictions, the loss up to rounding), and the resumed run with a tolerance:

- Straight runs of this configuration under this machine's AVX-512 kernels, under
  ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` and under ``ATEN_CPU_CAPABILITY=default``
  differ from the stored epoch-2 weights, and from each other, by at most 3e-8 (two float32
  units in the last place at the weights' scale of 0.37). Resuming the stored run for a third
  epoch ends within 1e-6 of each tensor's largest magnitude of the straight run (observed: at
  most 9.2e-7 for Adam's second moments under the default kernels, 1e-7 for the weights):
  one epoch does not amplify a rounding difference.
- So every float tensor must agree within 1e-5 of its largest magnitude (ten times the worst
  observed). A resume that lost any state (optimizer moments, a scheduler step, the RNG that
  draws the flips, an EMA update) moves weights by a learning-rate step, 1e-3 against weights
  of about 0.2: a hundred times beyond that tolerance. Integer tensors (RNG states, step
  counts) must be equal.

Bit-identical resume on one machine is pinned by tests/test_resume.py and tests/test_train.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.train import TrainConfig, Trainer

OLD_RUN = Path(__file__).parent / "data" / "run-zoo-0.1"
# Of each float tensor's largest magnitude: see the module's docstring.
RESUME_TOLERANCE = 1e-5


def assert_close_to_straight(resumed: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]):
    assert resumed.keys() == fresh.keys()
    for key, want in fresh.items():
        got = resumed[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        if not want.dtype.is_floating_point:
            assert torch.equal(got, want), key
            continue
        scale = want.double().abs().max().item()
        worst = (got.double() - want.double()).abs().max().item()
        assert worst <= RESUME_TOLERANCE * scale, (key, worst, scale)


@pytest.mark.cpu_kernels
def test_a_run_written_by_zoo_0_1_loads_evaluates_and_resumes(cli, tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    model = zoo.load(run)
    assert model.classes == [str(d) for d in range(10)] and model.image_size == (8, 8)
    stored = load_file(str(OLD_RUN / "model.safetensors"))
    loaded = model.net.state_dict()
    assert loaded.keys() == stored.keys()
    assert all(torch.equal(loaded[k], stored[k]) for k in stored)  # loading is exact

    # zoo 0.1's own validation of epoch 2, on the CPU that recorded it: the same predictions
    # (counts of images), the loss up to the order of float32 sums.
    recorded = json.loads((OLD_RUN / "metrics.jsonl").read_text().splitlines()[-1])
    report = json.loads(cli("eval", run, "--json", "--no-plots").stdout)
    assert report["count"] == 359 and report["epoch"] == 2
    assert round(report["accuracy"] * 359) == round(recorded["val_accuracy"] * 359)
    assert report["loss"] == pytest.approx(recorded["val_loss"], rel=1e-5)

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
        try:
            assert_close_to_straight(resumed, fresh)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


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
