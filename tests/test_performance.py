"""What the performance work must keep: the tutorial's exact network, the CPU defaults' rule,
predictions streamed in order equal to the serial path, and the GPU benchmark script (run on
the CPU at toy sizes so that it never rots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import ZooError

REPO = Path(__file__).resolve().parents[1]


def test_simplecnn_valid_is_the_keras_tutorials_network() -> None:
    net = zoo.create_model("simplecnn:padding=valid", num_classes=10, in_chans=1, image_size=64)
    # Keras 3's count_params() for the tutorial's Sequential model at 64x64x1, 10 classes.
    assert sum(p.numel() for p in net.parameters()) == 683_914
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 10)
    same = zoo.create_model("simplecnn", num_classes=10, in_chans=1, image_size=64)
    assert sum(p.numel() for p in same.parameters()) == 1_142_666  # padded: any size works
    assert zoo.create_model("simplecnn", num_classes=3, in_chans=3, image_size=1)(
        torch.zeros(1, 3, 1, 1)
    ).shape == (1, 3)
    net22 = zoo.create_model("simplecnn:padding=valid", num_classes=3, in_chans=3, image_size=22)
    assert net22(torch.zeros(1, 3, 22, 22)).shape == (1, 3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("simplecnn:padding=valid", "22 px at least"), ("simplecnn:padding=full", "same, valid")],
)
def test_simplecnn_bad_padding_or_size_is_one_line(spec: str, message: str) -> None:
    with pytest.raises(ZooError, match=message):
        zoo.create_model(spec, num_classes=3, in_chans=3, image_size=21)


def test_gpu_script_smoke_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "smoke" and report["ok"]
    steps = report["steps"]
    assert all(s["exit"] == 0 for s in steps.values())
    overhead = next(s["report"] for name, s in steps.items() if name.startswith("overhead"))
    assert overhead["same_weights"] == [True]
    assert steps["benchmark eager"]["report"]["train"]["images_per_second"] > 0
    pil = steps["train streamed, PIL in loader workers"]["run"]
    batched = steps["train streamed, batched decode"]["run"]
    # Workers decode the training images in the first epoch; the batched decode fills the
    # cache before it, and the first epoch counts those.
    assert pil["decoded_images"][0] > 0 and batched["decoded_images"][0] >= 19
    assert pil["memory"]["workers_peak_rss_mb"] > 0
    assert steps["train torchrun 1 process"]["run"]["images_per_second"] > 0
    assert steps["train bf16"]["run"]["images_per_second"] > 0
    assert report["checks"]["overhead_ratios"]
    serve = steps["serve --arch simplecnn --image-size 8"]["report"]
    assert serve["zoo serve"]["errors"] == serve["hand endpoint"]["errors"] == 0
    assert sum(serve["batch_sizes"].values()) > 0 and serve["throughput_ratio"] > 0


def vit_like() -> torch.nn.Module:
    """A patch embedding (a convolution whose windows do not overlap) and linear layers."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, kernel_size=4, stride=4),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 4 * 4, 32),
        torch.nn.GELU(),
        torch.nn.Linear(32, 10),
    )


@pytest.mark.parametrize(
    ("features", "arch", "channels_last", "bf16"),
    [
        ({"avx2", "avx512f", "avx512bf16", "amxbf16"}, "cnn", True, False),
        ({"avx2", "avx512f", "avx512bf16", "amxbf16"}, "resnet", False, False),  # norms
        ({"avx2", "avx512f", "avx512bf16", "amxbf16"}, "vit", True, True),
        ({"avx2", "avx512f", "avx512bf16", "amxbf16"}, "mlp", False, True),
        ({"avx2", "avx512f", "avx512bf16"}, "vit", True, False),  # no AMX: fp32
        ({"avx2", "avx512f"}, "cnn", True, False),
        ({"avx2", "fma"}, "cnn", False, False),  # not measured without AVX-512: as before
        (set(), "vit", False, False),  # Arm, or nothing detected
    ],
)
def test_cpu_defaults_follow_the_cpu_and_the_network(
    features: set[str], arch: str, channels_last: bool, bf16: bool
) -> None:
    from zoo.device.defaults import cpu_defaults

    net = {
        "cnn": lambda: zoo.create_model("simplecnn", num_classes=10, in_chans=3, image_size=16),
        "vit": vit_like,
        "mlp": lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10)),
        "resnet": lambda: torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU()
        ),
    }[arch]()
    chosen = cpu_defaults(frozenset(features), net)
    assert (chosen.channels_last, chosen.bf16) == (channels_last, bf16)


def test_auto_settings_on_this_cpu_follow_the_rule_and_flags_override_them() -> None:
    from zoo.device.cpu import cpu_features
    from zoo.device.defaults import cpu_defaults, use_channels_last
    from zoo.device.precision import resolve_precision

    cpu = torch.device("cpu")
    for net in (vit_like(), zoo.create_model("simplecnn", num_classes=3, in_chans=1, image_size=8)):
        rule = cpu_defaults(cpu_features(), net)
        expected = torch.bfloat16 if rule.bf16 else torch.float32
        assert resolve_precision("auto", cpu, net) == expected
        assert resolve_precision("fp32", cpu, net) == torch.float32
        assert resolve_precision("bf16", cpu, net) == torch.bfloat16
        assert use_channels_last(None, cpu, net) == rule.channels_last
        assert use_channels_last(False, cpu, net) is False
        assert use_channels_last(True, cpu, net) is True
        # Convolutions in bf16 run channels-last: an explicit precision decides it too.
        assert use_channels_last(None, cpu, net, "bf16") is True  # both networks convolve
    assert resolve_precision("auto", cpu) == torch.float32  # before the network is known
