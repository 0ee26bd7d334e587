"""The cost of checking a weights file's tensor digest, against loading the file without it.

zoo records a digest of every tensor's bytes in a weights file's metadata and checks it
whenever tensors are loaded (``zoo.models.weights.verify_tensors``), so a damaged file is
refused rather than predicting NaN. This measures, on a file of ``--mb`` megabytes (float32
tensors of a ResNet-like mix of sizes, written by zoo's own writer):

- ``load``: the tensors read as zoo read them before the check (safetensors' ``safe_open`` +
  ``get_tensor``, from the page cache: the file is read once first), each copied once as
  ``load_state_dict`` copies it into a network (safetensors maps the file: without the copy,
  nothing would be read);
- ``verify``: the digest check alone (SHA-256 of 16 MiB chunks, read and hashed on threads);
- ``load_tensors``: zoo's load as it is now (check, then load and copy);
- ``encode``: the digest computed when writing, as a share of zoo's whole ``encode``.

The methods alternate for ``--repeats`` rounds; medians are printed with the ratio of checked
to unchecked load time.

    python benchmarks/digest.py --mb 100 --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open

from zoo.models import weights


def tensors_of(megabytes: float) -> dict[str, torch.Tensor]:
    """Conv-like and linear-like float32 tensors adding up to about ``megabytes``."""
    g = torch.Generator().manual_seed(0)
    shapes = [(512, 512, 3, 3), (256, 256, 3, 3), (1000, 2048), (128, 128, 3, 3), (512,)]
    out, total, i = {}, 0, 0
    while total < megabytes * 2**20:
        shape = shapes[i % len(shapes)]
        out[f"layer{i}.weight"] = torch.randn(shape, generator=g)
        total += out[f"layer{i}.weight"].numel() * 4
        i += 1
    return out


def plain_load(path: Path) -> None:
    """The tensors as a model gets them: safetensors maps the file, and copying into the
    network's parameters (``load_state_dict``) reads every byte; ``clone`` does that here."""
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():  # noqa: SIM118 - safe_open is not iterable
            f.get_tensor(k).clone()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    tensors = tensors_of(args.mb)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        weights.save(path, tensors, None)
        size = os.path.getsize(path)
        plain_load(path)  # into the page cache
        rounds: dict[str, list[float]] = {k: [] for k in ("load", "verify", "load_tensors")}
        encode: list[float] = []
        digest: list[float] = []
        cpu = weights._cpu_tensors(tensors)
        for _ in range(args.repeats):
            rounds["load"].append(timed(lambda: plain_load(path)))
            rounds["verify"].append(timed(lambda: weights.verify_tensors(path)))
            rounds["load_tensors"].append(
                timed(lambda: [t.clone() for t in weights.load_tensors(path).values()])
            )
            encode.append(timed(lambda: weights.encode(tensors, None)))
            digest.append(timed(lambda: weights._tensors_digest(weights._tensor_chunks(cpu))))
    med = {k: statistics.median(v) for k, v in rounds.items()}
    report = {
        "file_mb": round(size / 2**20, 1),
        "threads": min(8, os.cpu_count() or 1),
        "load_ms": round(med["load"] * 1000, 1),
        "verify_ms": round(med["verify"] * 1000, 1),
        "load_tensors_ms": round(med["load_tensors"] * 1000, 1),
        "checked_over_plain_load": round(med["load_tensors"] / med["load"], 2),
        "verify_mb_per_s": round(size / 2**20 / med["verify"]),
        "encode_ms": round(statistics.median(encode) * 1000, 1),
        "digest_share_of_encode": round(statistics.median(digest) / statistics.median(encode), 2),
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
