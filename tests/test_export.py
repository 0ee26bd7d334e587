"""``zoo export``: ONNX run in onnxruntime and TorchScript loaded back, compared with PyTorch."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch

import zoo


def raw_batch(kind: str, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    if kind == "uint8":
        return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
    return torch.rand((n, 1, 8, 8), generator=g)


@pytest.fixture
def run(small_run: Path, tmp_path: Path) -> Path:
    """A copy of the small run, so exports land beside its weights without touching it."""
    return Path(shutil.copytree(small_run, tmp_path / "run"))


@pytest.mark.parametrize("input_kind", ["normalized", "uint8"])
def test_onnx_logits_match_pytorch(cli, run: Path, input_kind: str) -> None:
    result = cli("export", run, "--format", "onnx", "--input", input_kind)
    path = run / "model.onnx"
    assert f"wrote {path}" in result.stdout and "checked with onnxruntime" in result.stdout

    model = zoo.load(run)
    images = raw_batch("uint8" if input_kind == "uint8" else "float")
    normalized = model.preprocess(images)
    with torch.no_grad():
        expected = model(normalized)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [1, 8, 8]  # dynamic batch axis
    feed = normalized if input_kind == "normalized" else images
    assert inp.name == ("input" if input_kind == "normalized" else "images")
    (logits,) = session.run(["logits"], {inp.name: feed.numpy()})
    diff = (torch.from_numpy(logits) - expected).abs().max().item()
    assert diff < 1e-4, diff

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["classes"]) == model.classes
    assert json.loads(meta["image_size"]) == [8, 8] and json.loads(meta["in_chans"]) == 1
    assert json.loads(meta["mean"]) == pytest.approx(list(model.info.mean))
    assert json.loads(meta["std"]) == pytest.approx(list(model.info.std))
    assert meta["input"] == input_kind
    assert json.loads(meta["zoo.model"])["arch"] == "zoo:simplecnn"


def test_torchscript_logits_match_pytorch(cli, run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported" / "digits.pt"
    result = cli("export", run, "--format", "torchscript", "--input", "float", "--out", out)
    assert "checked with torch.jit.load" in result.stdout
    extra = {"zoo.json": ""}
    with pytest.warns(FutureWarning):  # PyTorch marks torch.jit deprecated
        loaded = torch.jit.load(str(out), _extra_files=extra)
    model = zoo.load(run)
    images = raw_batch("float", n=7)
    with torch.no_grad():
        diff = (loaded(images) - model(model.preprocess(images))).abs().max().item()
    assert diff < 1e-5, diff
    meta = json.loads(extra["zoo.json"])
    assert meta["classes"] == model.classes and meta["input"] == "float"
    assert meta["input_spec"].startswith("float32 [N, 1, 8, 8]")


def test_export_refuses_to_overwrite(cli, run: Path) -> None:
    cli("export", run, "--format", "torchscript")
    target = run / "model.pt"
    before = target.read_bytes()
    result = cli("export", run, "--format", "torchscript", "--input", "uint8", code=2)
    assert result.stderr.strip() == f"error: {target} exists; add --overwrite to replace it"
    assert target.read_bytes() == before
    cli("export", run, "--format", "torchscript", "--input", "uint8", "--overwrite")
    assert target.read_bytes() != before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "--format must be one of onnx, torchscript, got 'tflite'"),
        (["--format", "onnx", "--input", "bgr"], "--input must be one of normalized, uint8"),
    ],
)
def test_export_bad_options(cli, run: Path, args: list[str], message: str) -> None:
    result = cli("export", run, *args, code=2)
    assert message in result.stderr
    assert not (run / "model.onnx").exists() and not (run / "model.pt").exists()


def test_missing_onnx_packages_are_named(cli, run: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    result = cli("export", run, "--format", "onnx", code=2)
    assert result.stderr.strip() == (
        "error: --format onnx needs onnxscript: pip install 'zoo[onnx]'"
    )


def test_without_onnxruntime_the_file_is_written_unchecked(cli, run: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = cli("export", run, "--format", "onnx")
    assert "not checked: onnxruntime is not installed" in result.stdout
    assert onnx.load(str(run / "model.onnx")).graph.output[0].name == "logits"
