"""JPEG decoding for image folders, three ways to uint8 pixels at the training size:

- ``zoo``: ``zoo.data.decoder.decode_image``: PIL in draft mode (libjpeg scales the DCT down while
  decoding), then torch's antialiased bilinear uint8 resize on the channels-last pixels;
- ``pil``: PIL in draft mode, then PIL's own bilinear resize (zoo's decoder before);
- ``torchvision``: ``torchvision.io.decode_image`` at full scale, then torchvision's
  antialiased resize (torchvision deprecated its decoders in 0.29, in favour of TorchCodec).

Photo-like JPEGs (smooth colour fields, edges and grain, quality 90, 4:2:0 chroma, the layout
of a phone or web photo) are written to a scratch folder, then each method decodes all of them
to each target size, alternating PIL, torchvision, PIL, ... for ``--repeats`` rounds. Prints
milliseconds per image (median of the rounds, one thread), images per second with a pool of
``--workers`` threads (as zoo's cache fills itself), and each method's mean absolute difference
from PIL's result in 0-255 units.

    python benchmarks/decode.py --count 200 --targets 224 64 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from common import photo_like

from zoo.data.decoder import decode_image as decode_zoo
from zoo.data.splits import default_workers


def decode_torchvision(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """torchvision.io's decoder (libjpeg-turbo at full scale), then an antialiased resize."""
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as tv_decode
    from torchvision.transforms.v2.functional import resize

    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    image = tv_decode(str(path), mode=mode)
    return resize(image, list(size), antialias=True).numpy()


def decode_pil(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Draft-mode decoding and PIL's resize."""
    from PIL import Image

    with Image.open(path) as im:
        mode = "L" if channels == 1 else "RGB"
        im.draft(mode, (size[1], size[0]))
        arr = np.asarray(im.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


METHODS: dict[str, Callable[[Path, tuple[int, int], int], np.ndarray]] = {
    "zoo": decode_zoo,
    "pil": decode_pil,
    "torchvision": decode_torchvision,
}


def timed(method: Callable, files: list[Path], size: tuple[int, int]) -> float:
    t0 = time.perf_counter()
    for f in files:
        method(f, size, 3)
    return (time.perf_counter() - t0) / len(files)


def pooled(method: Callable, files: list[Path], size: tuple[int, int], workers: int) -> float:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda f: method(f, size, 3), files))
        return len(files) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="JPEGs to write")
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--targets", type=int, nargs="+", default=[224, 64, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.count, args.width, args.height, args.repeats, args.workers, *args.targets) < 1:
        parser.error("counts, sizes, repeats and workers must be at least 1")
    torch.set_num_threads(1)  # as in a DataLoader worker: one decode per thread
    warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        files = [Path(tmp, f"{i:04d}.jpg") for i in range(args.count)]
        for f in files:
            photo_like(f, args.width, args.height, rng)
        for target in args.targets:
            size = (target, target)
            per_image: dict[str, list[float]] = {name: [] for name in METHODS}
            for _ in range(args.repeats):
                for name, method in METHODS.items():
                    per_image[name].append(timed(method, files, size))
            rates = {name: pooled(m, files, size, args.workers) for name, m in METHODS.items()}
            diff = {
                name: np.mean(
                    [
                        np.abs(
                            method(f, size, 3).astype(np.int16)
                            - decode_pil(f, size, 3).astype(np.int16)
                        ).mean()
                        for f in files[:50]
                    ]
                )
                for name, method in METHODS.items()
            }
            for name in METHODS:
                rows.append(
                    {
                        "method": name,
                        "target": target,
                        "ms_per_image": round(statistics.median(per_image[name]) * 1000, 3),
                        "images_per_second_pooled": round(rates[name], 1),
                        "workers": args.workers,
                        "mean_abs_diff_from_pil": round(float(diff[name]), 3),
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{args.count} photo-like {args.width}x{args.height} JPEGs (quality 90), "
        f"{args.repeats} rounds, pool of {args.workers} threads"
    )
    print(f"{'target':>6}  {'method':<12} {'ms/image':>9} {'img/s pooled':>13} {'|x - pil|':>9}")
    for r in rows:
        print(
            f"{r['target']:>6}  {r['method']:<12} {r['ms_per_image']:>9.2f} "
            f"{r['images_per_second_pooled']:>13.0f} {r['mean_abs_diff_from_pil']:>9.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
