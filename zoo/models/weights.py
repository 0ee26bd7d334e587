"""Weights and training state on disk: safetensors for tensors, JSON for everything else.

No pickle anywhere. Every file is written atomically (temporary file, fsync, rename), so a crash
or a SIGKILL leaves either the previous file or the new one, never half of one.

A weights file's metadata holds what is needed to rebuild and use the model (``ModelInfo``), a
digest of the tensor bytes (``zoo.tensors``) and a digest over that metadata and the tensor
layout (``zoo.digest``): a file whose metadata was edited by hand, or whose tensors were damaged
(a flipped bit, NaNs written over weights), is refused instead of silently building the wrong
model or predicting NaN. The tensor digest is checked whenever tensors are loaded; files written
before it existed have none and load as they did.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes

from zoo.errors import ZooError
from zoo.files.atomic import atomic_write

FORMAT = "zoo.weights.v1"
_INFO_KEY = "zoo.model"
_STATE_KEY = "zoo.state"
_DIGEST_KEY = "zoo.digest"
_TENSORS_KEY = "zoo.tensors"
# The tensor digest: SHA-256 of each 16 MiB chunk of each tensor's bytes (tensors in name
# order), then SHA-256 of those digests; chunks are hashed on several threads (hashlib
# releases the GIL), and the result does not depend on how many.
_TENSORS_ALGORITHM = "sha256-16MiB"
_CHUNK = 16 * 2**20


@dataclass
class ModelInfo:
    """Everything needed to rebuild an architecture and feed it images."""

    arch: str  # qualified plugin:name, which resolves even when names clash
    arch_params: dict[str, Any]
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    zoo_version: str
    config: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    # Multi-label: each class's probability threshold (the labels of an image are the classes
    # at or above theirs); None for tasks that answer otherwise, and then not written.
    thresholds: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        if self.thresholds is None:
            del data["thresholds"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        info = cls(**data)
        info.image_size = (int(data["image_size"][0]), int(data["image_size"][1]))
        info.mean, info.std = tuple(data["mean"]), tuple(data["std"])
        if len(info.classes) != info.num_classes:
            raise ValueError(f"{len(info.classes)} class names for {info.num_classes} classes")
        if info.thresholds is not None and len(info.thresholds) != info.num_classes:
            raise ValueError(f"{len(info.thresholds)} thresholds for {info.num_classes} classes")
        return info


def _digest(metadata: dict[str, str], layout: dict[str, tuple[str, list[int]]]) -> str:
    payload = json.dumps(
        [
            {k: v for k, v in sorted(metadata.items()) if k != _DIGEST_KEY},
            sorted((k, d, s) for k, (d, s) in layout.items()),
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _tensors_digest(chunks: list[tuple[str, Callable[[], Any]]]) -> str:
    """``ALGORITHM:HEX`` over ``(tensor name, read the chunk's bytes)`` pairs, in order."""

    def one(chunk: tuple[str, Callable[[], Any]]) -> bytes:
        name, read = chunk
        return hashlib.sha256(name.encode() + b"\0").digest() + hashlib.sha256(read()).digest()

    if len(chunks) > 2:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            digests = list(pool.map(one, chunks))
    else:
        digests = [one(chunk) for chunk in chunks]
    return f"{_TENSORS_ALGORITHM}:{hashlib.sha256(b''.join(digests)).hexdigest()}"


def _spans(length: int) -> list[tuple[int, int]]:
    """``(start, length)`` of each chunk of ``length`` bytes (one, empty, for no bytes)."""
    return [(s, min(_CHUNK, length - s)) for s in range(0, length, _CHUNK)] or [(0, 0)]


def _tensor_chunks(tensors: dict[str, torch.Tensor]) -> list[tuple[str, Callable[[], Any]]]:
    """The chunks of CPU tensors' bytes as safetensors stores them (little-endian), no copy."""
    chunks = []
    for name in sorted(tensors):
        view = memoryview(tensors[name].reshape(-1).view(torch.uint8).numpy())
        for s, n in _spans(len(view)):
            chunks.append((name, lambda v=view, s=s, n=n: v[s : s + n]))
    return chunks


def verify_tensors(path: Path) -> None:
    """Refuse a zoo file whose tensor bytes do not match the digest in its metadata (files
    written before zoo recorded one, and files of other tools, have none: nothing to check).
    Chunks are read with ``pread`` on the hashing threads."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
            metadata = header.get("__metadata__") or {}
            expected = metadata.get(_TENSORS_KEY)
            if metadata.get("zoo.format") != FORMAT or expected is None:
                return
            if not expected.startswith(f"{_TENSORS_ALGORITHM}:"):
                raise ZooError(
                    f"{path}: unknown tensor digest {expected.split(':')[0]!r} (written by a "
                    "newer zoo?); refusing to load it"
                )
            fd, base, chunks = f.fileno(), 8 + size, []
            for name in sorted(k for k in header if k != "__metadata__"):
                begin, end = (int(v) for v in header[name]["data_offsets"])
                for s, n in _spans(max(0, end - begin)):
                    at = base + begin + s
                    chunks.append((name, lambda at=at, n=n: os.pread(fd, n, at)))
            got = _tensors_digest(chunks)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"{path} is not a readable safetensors file ({exc})") from None
    if got != expected:
        raise ZooError(
            f"{path}: tensor data does not match its digest (the file was damaged or "
            "edited); refusing to load it"
        )


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies; safetensors refuses tensors sharing memory, so those are cloned."""
    out, seen = {}, set()
    for k, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[k] = t
    return out


def encode(
    tensors: dict[str, torch.Tensor], info: ModelInfo | None, state: dict[str, Any] | None = None
) -> bytes:
    """Serialize tensors with zoo's metadata (and optional training state) to safetensors."""
    tensors = _cpu_tensors(tensors)
    metadata = {"format": "pt", "zoo.format": FORMAT}
    if info is not None:
        metadata[_INFO_KEY] = json.dumps(info.to_json(), sort_keys=True)
    if state is not None:
        metadata[_STATE_KEY] = json.dumps(state, sort_keys=True)
    metadata[_TENSORS_KEY] = _tensors_digest(_tensor_chunks(tensors))
    layout = {k: (_dtype_name(t), list(t.shape)) for k, t in tensors.items()}
    metadata[_DIGEST_KEY] = _digest(metadata, layout)
    return save_bytes(tensors, metadata=metadata)


def save(
    path: Path,
    tensors: dict[str, torch.Tensor],
    info: ModelInfo | None,
    state: dict[str, Any] | None = None,
) -> None:
    atomic_write(path, encode(tensors, info, state))


@dataclass
class Header:
    """A zoo safetensors file's metadata, checked against its digest."""

    path: Path
    info: ModelInfo | None
    state: dict[str, Any] | None
    keys: list[str]


def read_header(path: Path) -> Header:
    """Open a weights/checkpoint file and verify its metadata; no tensor is read."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            keys = list(f.keys())
            layout = {}
            for k in keys:
                sl = f.get_slice(k)
                layout[k] = (
                    _SAFETENSORS_DTYPES.get(sl.get_dtype(), sl.get_dtype()),
                    list(sl.get_shape()),
                )
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZooError(f"{path} is not a readable safetensors file ({exc})") from None
    if metadata.get("zoo.format") != FORMAT:
        return Header(path, None, None, keys)
    if metadata.get(_DIGEST_KEY) != _digest(metadata, layout):
        raise ZooError(
            f"{path}: metadata does not match its digest (the file was edited or "
            "damaged); refusing to load it"
        )
    try:
        info = (
            ModelInfo.from_json(json.loads(metadata[_INFO_KEY])) if _INFO_KEY in metadata else None
        )
        state = json.loads(metadata[_STATE_KEY]) if _STATE_KEY in metadata else None
    except (ValueError, TypeError, KeyError) as exc:
        raise ZooError(f"{path}: invalid zoo metadata ({exc})") from None
    return Header(path, info, state, keys)


# safetensors reports dtypes by its own names; map them to torch's for the digest.
_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
}


def load_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors whose names start with ``prefix`` (the prefix stripped), on the CPU, after
    checking the file's tensor digest (every tensor's bytes, not only those returned)."""
    verify_tensors(path)
    out = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for k in f.keys():  # noqa: SIM118 - safe_open is not iterable
                if k.startswith(prefix):
                    out[k[len(prefix) :]] = f.get_tensor(k)
    except (SafetensorError, OSError) as exc:
        raise ZooError(f"cannot read tensors from {path}: {exc}") from None
    return out
