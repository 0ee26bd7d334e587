"""Writing WebDataset shards from any data source (``zoo shard``), with webdataset's
``ShardWriter``: ``train-NNNNNN.tar``, ``val-…`` and ``test-…`` as the source splits its data,
plus ``classes.txt`` and ``sizes.json`` (samples per shard, the epoch length ``wds:`` reads).

The images are the source's, decoded at the size a run would train at (or ``--image-size``)
and encoded as ``--format``; PNG keeps those pixels exactly, so training on the shards is
training on the same images. The shards are written into a folder beside ``OUT`` and moved into
place whole: a failure leaves nothing at ``OUT``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9}


def parse_size(text: str) -> int:
    """``500MB``, ``1.5GB``, ``200k`` or a number of bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise ZooError(f"--shard-size must be a size such as 500MB or 1GB, got {text!r}")
    size = int(float(match.group(1)) * UNITS[match.group(2).lower()])
    if size < 1024:
        raise ZooError(f"--shard-size must be at least 1KB, got {text!r}")
    return size


def _items(split: Any) -> Iterator[tuple[Any, Any]]:
    """A split's ``(uint8 [C, H, W], label)`` items, unreadable ones left out."""
    from zoo.data.splits import ImageTensors, is_stream

    if isinstance(split, ImageTensors):
        for i in range(len(split)):
            yield split.images[i], split.labels[i]
        return
    if is_stream(split):
        set_epoch = getattr(split, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(0)
        source: Any = iter(split)
    else:
        source = (split[i] for i in range(len(split)))
    for item in source:
        if item is not None:
            yield item


def _encode(pixels: Any, fmt: str) -> bytes:
    import numpy as np
    from PIL import Image

    array = np.asarray(pixels).transpose(1, 2, 0)
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    out = io.BytesIO()
    image.save(out, format=FORMATS[fmt], **({"quality": 95} if fmt != "png" else {}))
    return out.getvalue()


def _label(y: Any) -> bytes:
    """``.cls``: a class index; label sets (multi-label) as space-separated indices."""
    values = y.tolist() if hasattr(y, "tolist") else y
    if isinstance(values, list):
        if values and all(v in (0, 1) for v in values) and len(values) > 1:
            values = [i for i, v in enumerate(values) if v]
        return " ".join(str(int(v)) for v in values).encode()
    return str(int(values)).encode()


def write_shards(data: Any, out: Path, *, shard_size: int, fmt: str) -> dict[str, int]:
    """Write ``data`` (a ``DataSplits``) as shards into ``out``; samples per split."""
    import webdataset as wds

    if fmt not in FORMATS:
        raise ZooError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ZooError(f"{out} exists and is not an empty folder; choose a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    try:
        for name in ("train", "val", "test"):
            split = getattr(data, name)
            if split is None:
                continue
            written: list[str] = []
            per_shard: dict[str, int] = {}

            def opened(fname: str, per_shard: dict[str, int] = per_shard) -> None:
                per_shard.setdefault(Path(fname).name, 0)

            pattern = str(staging / f"{name}-%06d.tar")
            n = 0
            with wds.ShardWriter(pattern, maxsize=shard_size, verbose=0) as writer:
                for pixels, y in _items(split):
                    writer.write(
                        {"__key__": f"{name}{n:08d}", fmt: _encode(pixels, fmt), "cls": _label(y)}
                    )
                    shard = Path(writer.fname).name
                    per_shard[shard] = per_shard.get(shard, 0) + 1
                    n += 1
            written = sorted(per_shard)
            sizes.update({s: per_shard[s] for s in written})
            counts[name] = n
        (staging / "classes.txt").write_text("".join(f"{c}\n" for c in data.classes))
        (staging / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts
