"""The data path: streamed folders decode each file once (then never again, in this run or the
next), and in-memory splits are indexed on the device without a DataLoader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_image_folder
from PIL import Image

from zoo.data.batches import TensorBatches, make_batches
from zoo.data.decoder import decode_image
from zoo.data.splits import ImageTensors


def decoded_per_epoch(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["decoded_images"] for line in lines]


def test_a_streamed_folder_decodes_in_the_first_epoch_only(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image_folder(tmp_path / "images", {"cats": 12, "dogs": 12}, ext=".jpg")
    monkeypatch.chdir(tmp_path)
    data = "folder:root=images,max_memory_mb=0.001"  # far below the folder: it streams
    args = ["--data", data, "--image-size", "8", "--batch-size", "8", "--workers", "2"]
    first = cli("train", *args, "--epochs", "2", "--out", "first")
    assert "decoded" in first.stdout
    counts = decoded_per_epoch(tmp_path / "first")
    assert counts[0] > 0 and counts[1] == 0
    memory = json.loads((tmp_path / "first" / "summary.json").read_text())["memory"]
    assert memory["workers_peak_rss_mb"] > 0  # the loader workers' own peak
    cli("train", *args, "--epochs", "1", "--out", "second")
    assert decoded_per_epoch(tmp_path / "second") == [0]  # the decoded cache serves it all


def test_in_memory_splits_are_indexed_without_a_loader() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2)
    split = ImageTensors(images.contiguous(), torch.arange(10))
    batches = make_batches(split, 4, torch.device("cpu"), train=True, workers=2, seed=0)
    assert isinstance(batches, TensorBatches) and len(batches) == 2
    seen = [(x, y) for x, y in batches.epoch(0)]
    assert all(x.dtype == torch.uint8 and x.shape == (4, 1, 2, 2) for x, _ in seen)
    labels = torch.cat([y for _, y in seen])
    assert len(set(labels.tolist())) == 8  # shuffled, no repeats, the last partial batch dropped
    assert all(torch.equal(x[:, 0, 0, 0].long(), y) for x, y in seen)
    again = torch.cat([y for _, y in batches.epoch(0)])
    assert torch.equal(labels, again)  # the order is a function of (seed, epoch)


def smooth_photo(path: Path, width: int = 300, height: int = 200) -> None:
    """A smooth colour field with a few edges: what photos look like to a resizer."""
    rng = np.random.default_rng(0)
    field = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    im = field.resize((width, height), Image.Resampling.BICUBIC)
    im.paste((250, 20, 40), (40, 30, 120, 90))
    im.save(path, quality=92)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
@pytest.mark.parametrize("size", [(224, 224), (40, 48)])  # near the source; a quarter of it
@pytest.mark.parametrize("channels", [1, 3])
def test_the_decoder_matches_pils_full_decode_and_resize(
    tmp_path: Path, ext: str, size: tuple[int, int], channels: int
) -> None:
    path = tmp_path / f"photo{ext}"
    smooth_photo(path)
    with Image.open(path) as im:
        mode = "L" if channels == 1 else "RGB"
        reference = np.asarray(im.convert(mode).resize(size[::-1], Image.Resampling.BILINEAR))
    reference = reference[None] if channels == 1 else reference.transpose(2, 0, 1)
    pixels = decode_image(path, size, channels)
    assert pixels.shape == (channels, *size) and pixels.dtype == np.uint8
    diff = np.abs(pixels.astype(np.int16) - reference.astype(np.int16))
    # Reduced-scale JPEG decoding (draft mode) differs slightly; the resize itself by <= 1.
    assert diff.mean() < (1.5 if ext == ".jpg" else 0.01)
    assert diff.max() <= (40 if ext == ".jpg" else 1)
