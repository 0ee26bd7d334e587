"""The feature cache: each backbone's features of one dataset, as safetensors files under zoo's
cache folder (``$ZOO_CACHE_DIR/features``, default ``~/.cache/zoo/features``).

A features file is keyed by the architecture, the weights' digest, the data's digest
(``zoo.probing.data``), the probe size and everything else that changes the numbers (channels,
precision, device kind, the extraction method), so a second probe, or one with more candidates
or another ``--out``, reuses what an earlier one extracted. A file holds each split's features
and labels: class indices, or for multi-label data ``{0, 1}`` label vectors, whose files are
also keyed by ``task`` (single-label files keep the key and contents they always had, so they
still load; no file of one kind is ever read as the other). Beside it, ``NAME.FIT.json`` holds
the scores of the logistic regression and the kNN fitted on those features (``FIT``: a digest of
the fit's settings, the task among them, ``zoo.probing.linear.fit_settings``): they are a
function of the features and those settings alone, so a second probe of the same candidates
fits nothing either; and ``data-*.json`` entries hold the facts of data a probe has read
(``zoo.probing.data``). Every key is made without torch, and a scored candidate's row is read
from the header of its features file and its scores, so a second probe of the same candidates
loads neither torch nor a network.

The cache is zoo's own: nothing is ever written into the Hugging Face cache, whose files stay as
huggingface_hub wrote them. Files are written atomically (a reader sees a whole file or none);
one that cannot be read is made again, and a cache folder that cannot be written only costs the
work next time.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoo.probing.features import Extracted

# Bumped when what a cache file holds, or how features are extracted, changes.
FORMAT = 2
_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def folder() -> Path:
    from zoo.plugins.cache import cache_dir

    return cache_dir() / "features"


def weights_digest(path: Path) -> str:
    """The weights file's content digest. A Hugging Face cache entry is a link to a blob named
    by its content (sha256 for LFS files): that name is used without reading the file; any
    other file is hashed."""
    real = path.resolve()
    if real.parent.name == "blobs" and _HEX.fullmatch(real.name):
        return real.name
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def key(**parts: Any) -> str:
    """The cache file's name for these parts (weights, data, size, ...)."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def path_of(name: str) -> Path:
    return folder() / f"{name}.safetensors"


def load(name: str) -> Extracted | None:
    """The cached features, or None when there are none (or the file is damaged)."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    from zoo.probing.features import Extracted

    path = path_of(name)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in ("train", "train_labels", "val", "val_labels")}
        return Extracted(
            **tensors,
            images_per_second=float(meta["images_per_second"]),
            seconds=float(meta["seconds"]),
        )
    except (SafetensorError, OSError, KeyError, ValueError):
        return None


def save(name: str, extracted: Extracted, about: dict[str, Any]) -> Path | None:
    """Store features atomically; None (after one warning line) when the cache folder cannot
    be written."""
    from safetensors.torch import save

    from zoo.files.atomic import atomic_write

    tensors = {
        "train": extracted.train.contiguous(),
        "train_labels": extracted.train_labels.contiguous(),
        "val": extracted.val.contiguous(),
        "val_labels": extracted.val_labels.contiguous(),
    }
    meta = {
        "images_per_second": repr(extracted.images_per_second),
        "seconds": repr(extracted.seconds),
        "about": json.dumps(about, sort_keys=True),
    }
    path = path_of(name)
    try:
        atomic_write(path, save(tensors, metadata=meta))
    except OSError as exc:
        print(
            f"warning: cannot write the feature cache in {path.parent} "
            f"({exc.strerror or exc}); set ZOO_CACHE_DIR to a writable folder to keep features",
            file=sys.stderr,
        )
        return None
    return path


def header(name: str) -> dict[str, Any] | None:
    """What the features file ``name`` holds, read from its header alone (no tensor, no
    torch): ``train``/``val`` images and ``features`` per image, ``images_per_second``,
    ``seconds``; None when there is no such file or it cannot be read."""
    from safetensors import SafetensorError, safe_open

    path = path_of(name)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            train, val = (f.get_slice(k).get_shape() for k in ("train", "val"))
        return {
            "train": int(train[0]),
            "val": int(val[0]),
            "features": int(train[1]),
            "images_per_second": float(meta["images_per_second"]),
            "seconds": float(meta["seconds"]),
        }
    except (SafetensorError, OSError, KeyError, ValueError, IndexError):
        return None


def read_file(filename: str) -> bytes | None:
    """The bytes of the cache folder's ``filename``, or None when it cannot be read."""
    try:
        return (folder() / filename).read_bytes()
    except OSError:
        return None


def write_file(filename: str, data: bytes) -> None:
    """Store ``filename`` atomically; a cache folder that cannot be written only costs work."""
    import contextlib

    from zoo.files.atomic import atomic_write

    with contextlib.suppress(OSError):
        atomic_write(folder() / filename, data)


def load_entry(name: str) -> Any:
    """The JSON entry ``name`` of the cache folder, or None when it is missing or damaged."""
    data = read_file(f"{name}.json")
    try:
        return None if data is None else json.loads(data)
    except ValueError:
        return None


def save_entry(name: str, data: Any) -> None:
    write_file(f"{name}.json", json.dumps(data).encode())


def scores_name(name: str, fit: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(fit, sort_keys=True).encode()).hexdigest()[:16]
    return f"{name}.{digest}"


def load_scores(name: str, fit: dict[str, Any]) -> dict[str, Any] | None:
    """The scores fitted on the features ``name`` with the settings ``fit``, or None."""
    data = load_entry(scores_name(name, fit))
    return data.get("scores") if isinstance(data, dict) and data.get("fit") == fit else None


def save_scores(name: str, fit: dict[str, Any], scores: dict[str, Any]) -> None:
    """Store the scores atomically; a cache folder that cannot be written only costs a fit."""
    save_entry(scores_name(name, fit), {"fit": fit, "scores": scores})
