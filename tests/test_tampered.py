"""Weights whose metadata was edited by hand, or whose tensors were damaged, are refused by
every command that reads them; files of older zoo versions still load."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from zoo.builtins.loaders import digits_arrays
from zoo.models.weights import read_header, save


def tamper(path: Path) -> None:
    """Rewrite a safetensors header with one class renamed, keeping the old digest."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    info = json.loads(header["__metadata__"]["zoo.model"])
    info["classes"][0] = "zero"
    header["__metadata__"]["zoo.model"] = json.dumps(info, sort_keys=True)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size :])


@pytest.mark.parametrize(
    "command",
    [["eval"], ["predict", "IMAGE"], ["export", "--format", "onnx"]],
    ids=["eval", "predict", "export"],
)
def test_tampered_weights_are_refused(cli, small_run, tmp_path, command) -> None:
    weights = tmp_path / "model.safetensors"
    shutil.copy(small_run / "model.safetensors", weights)
    tamper(weights)
    with safe_open(str(weights), framework="pt") as f:  # still a valid safetensors file
        assert json.loads(f.metadata()["zoo.model"])["classes"][0] == "zero"
    image = tmp_path / "digit.png"
    Image.fromarray(digits_arrays()[0][0, 0]).save(image)
    args = [image if a == "IMAGE" else a for a in command]
    result = cli(args[0], weights, *args[1:], code=2)
    assert result.stderr.strip() == (
        f"error: {weights}: metadata does not match its digest (the file was edited or "
        "damaged); refusing to load it"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit.png", "model.safetensors"]


def damage(path: Path, at: float = 0.5) -> None:
    """Flip one bit of a tensor's bytes in place (a bad disk block, a bad copy)."""
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    raw[start + int((len(raw) - start) * at)] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "command",
    [["eval"], ["predict", "IMAGE"], ["export", "--format", "torchscript"]],
    ids=["eval", "predict", "export"],
)
def test_damaged_tensors_are_refused(cli, small_run, tmp_path, command) -> None:
    weights = tmp_path / "model.safetensors"
    shutil.copy(small_run / "model.safetensors", weights)
    damage(weights)
    image = tmp_path / "digit.png"
    Image.fromarray(digits_arrays()[0][0, 0]).save(image)
    args = [image if a == "IMAGE" else a for a in command]
    result = cli(args[0], weights, *args[1:], code=2)
    assert result.stderr == (
        f"error: {weights}: tensor data does not match its digest (the file was damaged or "
        "edited); refusing to load it\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit.png", "model.safetensors"]


def test_damaged_checkpoints_are_refused_by_resume_and_init(cli, small_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    last = run / "checkpoints" / "last.safetensors"
    last.unlink()  # a file of its own (best may be a hard link to the same bytes)
    shutil.copy(small_run / "checkpoints" / "last.safetensors", last)
    damage(last, at=0.99)  # the optimizer state, which only a resume reads
    result = cli("train", "--resume", run, "--epochs", "2", code=2)
    assert f"error: {last}: tensor data does not match its digest" in result.stderr
    args = ["--init", last, "--image-size", "8", "--epochs", "1", "--out", tmp_path / "tuned"]
    assert "does not match its digest" in cli("train", *args, code=2).stderr
    assert not (tmp_path / "tuned").exists()


def test_weights_written_before_the_tensor_digest_still_load(small_run, tmp_path) -> None:
    # What zoo wrote before it recorded a tensor digest: the same metadata without it, under
    # the metadata digest of that time (metadata and layout only).
    path = tmp_path / "old.safetensors"
    tensors = load_file(str(small_run / "model.safetensors"))
    with safe_open(str(small_run / "model.safetensors"), framework="pt") as f:
        metadata = {k: v for k, v in f.metadata().items() if k not in ("zoo.tensors", "zoo.digest")}
    layout = sorted(
        (k, str(t.dtype).removeprefix("torch."), list(t.shape)) for k, t in tensors.items()
    )
    metadata["zoo.digest"] = hashlib.sha256(
        json.dumps([dict(sorted(metadata.items())), layout]).encode()
    ).hexdigest()
    save_file(tensors, str(path), metadata=metadata)
    model = zoo.load(path)
    assert model.classes == zoo.load(small_run).classes
    damage(path)  # nothing to check it against: it loads, as it always did
    zoo.load(path)


def test_export_fails_on_non_finite_outputs(cli, small_run, tmp_path) -> None:
    # A NaN in the weights, saved by zoo's own writer (its digests valid): PyTorch's outputs
    # are NaN, and a check against NaN proves nothing.
    weights = tmp_path / "model.safetensors"
    header = read_header(small_run / "model.safetensors")
    tensors = load_file(str(small_run / "model.safetensors"))
    tensors["classifier.bias"][0] = float("nan")
    save(weights, tensors, header.info)
    result = cli("export", weights, "--format", "torchscript", code=1)
    assert result.stderr == (
        "error: the model's own outputs (PyTorch's) are not finite (NaN or infinite) on a test "
        "batch: its weights are damaged or diverged; nothing was written\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
