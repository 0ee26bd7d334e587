"""Resident memory across a long ``zoo train`` run: does anything grow from epoch to epoch?

Trains through zoo's ``Trainer`` (as ``zoo train`` does) for ``--epochs`` epochs on the
embedded digits (held in memory) and on a folder of photo-like JPEGs streamed through
DataLoader workers from the decoded cache. Prints each run's resident memory after every epoch
(``rss_mb`` in metrics.jsonl), its growth from the end of epoch 2 to the last epoch (the first
epochs allocate the optimizer state, caches and worker buffers) and over the second half of the
run (where a leak would still show and one-off allocations no longer do), the summary's peak,
and the images decoded per epoch of the streamed run.

    python benchmarks/memory.py --epochs 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from decode import photo_like

from zoo.train.allocator import keep_freed_memory
from zoo.train.config import TrainConfig
from zoo.train.progress import Reporter
from zoo.train.trainer import Trainer


def train(out: Path, epochs: int, **settings: Any) -> dict[str, Any]:
    cfg = TrainConfig(out=str(out), epochs=epochs, overwrite=True, **settings)
    result = Trainer(cfg, Reporter()).fit()
    rss = [r["rss_mb"] for r in result.history]
    base = rss[1] if len(rss) > 1 else rss[0]
    return {
        "rss_mb": rss,
        "growth_mb": round(rss[-1] - base, 1),
        "second_half_growth_mb": round(rss[-1] - rss[len(rss) // 2 - 1 if len(rss) > 1 else 0], 1),
        "peak_rss_mb": result.summary["memory"]["peak_rss_mb"],
        "decoded_images": [r.get("decoded_images") for r in result.history],
        "seconds_per_epoch": [r["seconds"] for r in result.history],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--images", type=int, default=600, help="JPEGs in the streamed folder")
    parser.add_argument("--image-size", type=int, default=64, help="for the streamed folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.epochs, args.images, args.image_size) < 1 or args.images < 4:
        parser.error("--epochs and --image-size must be at least 1, --images at least 4")
    keep_freed_memory()  # as zoo train does
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ZOO_CACHE_DIR"] = str(Path(tmp, "cache"))  # a fresh decoded cache
        rng = np.random.default_rng(0)
        for i in range(args.images):
            folder = Path(tmp, "photos", f"class{i % 4}")
            folder.mkdir(parents=True, exist_ok=True)
            photo_like(folder / f"{i:05d}.jpg", 500, 375, rng)
        os.chdir(tmp)  # --data takes the folder as a relative root=
        runs = {
            "digits (in memory)": train(Path(tmp, "digits"), args.epochs, image_size="32"),
            "photo folder (streamed)": train(
                Path(tmp, "streamed"),
                args.epochs,
                data="folder:root=photos,max_memory_mb=1",
                image_size=str(args.image_size),
            ),
        }
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    for name, r in runs.items():
        print(
            f"{name}: rss after each epoch {r['rss_mb']} MB; growth from epoch 2 to "
            f"{len(r['rss_mb'])}: {r['growth_mb']:+.1f} MB (second half "
            f"{r['second_half_growth_mb']:+.1f} MB); peak {r['peak_rss_mb']:.0f} MB"
        )
        if r["decoded_images"][0] is not None:
            print(f"  decoded images per epoch: {r['decoded_images']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
