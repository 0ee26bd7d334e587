"""Weights whose metadata was edited by hand are refused by every command that reads them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open

from zoo.builtins.loaders import digits_arrays


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
