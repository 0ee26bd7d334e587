"""Where a compiled inference engine is kept: beside the weights, keyed by their digest and
the CPU, so that the next ``zoo predict``, ``zoo eval`` or ``zoo serve`` of the same weights on
the same kind of CPU reuses what was exported and measured instead of doing it again.

An entry is a folder ``.zoo-inference/<weights>-<digest>-<cpu>-<versions>/`` in the run
directory of the weights, holding the exported model (``model-<sha256>.onnx``) and
``engine.json`` (the engine chosen and the timings it was chosen by), written last so that an
entry is complete or absent.
Weights outside a run directory (a weights file on its own, a timm folder, a Hub download, a
symbolic link, anything inside the Hugging Face cache, a folder zoo cannot write) keep their
entries in zoo's cache folder instead: nothing is ever written into the Hugging Face cache.

Writes never go through a symbolic link: a folder of the path that is a link makes the cache
unused, files are created anew and renamed into place (``zoo.files.atomic``), and reads open
files with ``O_NOFOLLOW``. A cache that cannot be written is not an error: the engine is
measured again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER = ".zoo-inference"
MANIFEST = "engine.json"


@dataclass(frozen=True)
class Entry:
    """One weights file's entry for this CPU and these library versions."""

    folder: Path  # the base folder: RUN/.zoo-inference, or zoo's cache folder's inference/
    name: str  # <weights stem>-<digest>-<cpu>-<versions>
    stem: str  # the part shared by every entry of the same weights file name

    @property
    def path(self) -> Path:
        return self.folder / self.name


def entry_for(weights: Path, hub: bool, versions: dict[str, str]) -> Entry:
    """The entry of ``weights`` (a file) on this CPU with these library ``versions``."""
    from zoo.device.cpu import cpu_identity

    weights = Path(weights)
    digest = weights_digest(weights)
    text = json.dumps(versions, sort_keys=True).encode()
    suffix = f"{cpu_identity()}-{hashlib.sha256(text).hexdigest()[:8]}"
    if _own_folder(weights, hub):
        folder, stem = weights.parent / FOLDER, weights.stem
    else:
        from zoo.plugins.cache import cache_dir

        folder, stem = cache_dir() / "inference", f"{weights.parent.name}-{weights.stem}"
    return Entry(folder, f"{stem}-{digest[:16]}-{suffix}", stem)


def weights_digest(weights: Path) -> str:
    """A digest that changes whenever the weights do. A zoo weights file's header already holds
    the digest of its tensors (checked on every load) and its metadata: the header is hashed.
    Other safetensors files (timm, Hugging Face) are hashed whole, with their config.json."""
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = f.read(size) if 0 < size < 100_000_000 else b""
        if b'"zoo.tensors"' in header:
            digest.update(header)
            return digest.hexdigest()
        f.seek(0)
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    config = weights.parent / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    return digest.hexdigest()


def _own_folder(weights: Path, hub: bool) -> bool:
    """Whether the weights sit in a run directory (``zoo train`` wrote its ``metrics.jsonl``
    there) that zoo may write into: a weights file anywhere else, a timm folder or a Hub
    download is not zoo's to add files to."""
    if hub or weights.is_symlink() or weights.parent.is_symlink():
        return False
    if not (weights.parent / "metrics.jsonl").is_file():
        return False
    try:
        from huggingface_hub import constants

        hf_cache = Path(constants.HF_HUB_CACHE).resolve()
        if weights.resolve().is_relative_to(hf_cache):
            return False
    except (ImportError, OSError, AttributeError):
        pass
    return os.access(weights.parent, os.W_OK)


def read(entry: Entry) -> tuple[dict[str, Any], bytes | None] | None:
    """The manifest and the exported model's bytes of a complete entry (None: no usable
    entry: absent, incomplete, a link, or a model file that does not match its digest)."""
    if not _real_dirs(entry.folder, entry.path):
        return None
    try:
        manifest = json.loads(_read_nofollow(entry.path / MANIFEST))
        data = None
        if manifest.get("file"):
            data = _read_nofollow(entry.path / str(manifest["file"]))
            if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
                return None
    except (OSError, ValueError, AttributeError):
        return None
    return manifest, data


def write(entry: Entry, manifest: dict[str, Any], data: bytes | None) -> bool:
    """Store an entry (the model's bytes first, the manifest last); entries of earlier weights
    of the same file name on this CPU are removed. False when it cannot be written."""
    from zoo.files.atomic import atomic_write

    manifest = dict(manifest)
    try:
        if not (_make_dir(entry.folder) and _make_dir(entry.path)):
            return False
        if data is not None:
            sha = hashlib.sha256(data).hexdigest()
            manifest["file"], manifest["sha256"] = f"model-{sha[:16]}.onnx", sha
            if not (entry.path / manifest["file"]).is_file():
                atomic_write(entry.path / manifest["file"], data)
        atomic_write(entry.path / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    except OSError:
        return False
    _remove_stale(entry)
    return True


def _remove_stale(entry: Entry) -> None:
    """Entries of the same weights file name, CPU and versions whose digest differs: the
    weights were written again (a run trained anew with --overwrite)."""
    tail = entry.name[len(entry.stem) + 1 + 16 :]  # -<cpu>-<versions>
    try:
        siblings = list(entry.folder.iterdir())
    except OSError:
        return
    for other in siblings:
        if (
            other.name != entry.name
            and len(other.name) == len(entry.name)
            and other.name.startswith(f"{entry.stem}-")
            and other.name.endswith(tail)
            and other.is_dir()
            and not other.is_symlink()
        ):
            shutil.rmtree(other, ignore_errors=True)


def _make_dir(path: Path) -> bool:
    """``path`` as a real folder (made when missing); False when it is a link or not a folder."""
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return False
    return not path.is_symlink() and path.is_dir()


def _real_dirs(*paths: Path) -> bool:
    return all(p.is_dir() and not p.is_symlink() for p in paths)


def _read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()
