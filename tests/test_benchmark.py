"""``zoo benchmark``: it runs, its JSON has the documented fields, bad input is one line."""

from __future__ import annotations

import json

import pytest

TINY = ["--arch", "simplecnn:hidden=8", "--image-size", "8", "--batch-size", "2"]
QUICK = ["--steps", "1", "--warmup", "1"]


def test_json_report_has_throughput_and_memory_for_both_phases(cli) -> None:
    report = json.loads(cli("benchmark", *TINY, *QUICK, "--json").stdout)
    assert report["qualified"] == "zoo:simplecnn" and report["params"] > 0
    assert report["image_size"] == [8, 8] and report["batch_size"] == 2
    assert report["device"] in ("cpu", "cuda:0", "mps")
    assert isinstance(report["channels_last"], bool) and report["compile"] is False
    assert report["compile_mode"] is None
    assert report["precision"] in ("float32", "bfloat16") and report["steps"] == 1
    for phase in ("train", "inference"):
        p = report[phase]
        assert p["images_per_second"] > 0 and p["step_ms"] > 0 and p["warmup_seconds"] >= 0
        assert p["peak_rss_mb"] is None or p["peak_rss_mb"] > 0
    assert report["peak_rss_mb"] > 0


def test_table_output_and_one_phase(cli) -> None:
    out = cli("benchmark", *TINY, *QUICK, "--no-train", "--device", "cpu", "--no-amp").stdout
    assert "zoo:simplecnn" in out and "inference" in out and "img/s" in out
    assert "train " not in out and "float32" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--image-size", "big"], "image size must be N or HxW"),
        (["--no-train", "--no-inference"], "nothing to measure"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--compile-mode", "fastest"], "--compile-mode must be one of default, reduce-overhead"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args: list[str], message: str) -> None:
    result = cli("benchmark", *TINY, *QUICK, *args, code=2)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_architecture(cli) -> None:
    result = cli("benchmark", "--arch", "no_such_net", code=2)
    assert "unknown architecture 'no_such_net'" in result.stderr
