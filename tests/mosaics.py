"""Multi-label data with known truth, built offline in a second: 64x64 mosaics of 1-4 real digit
scans (scikit-learn's, as zoo's digits dataset ships them) in a 2x2 grid, labelled with the
digits present. Each split draws its scans from its own third of the 1,797, so the test split's
digits are handwriting no training image holds. The tests and benchmarks/multilabel.py share it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
CELL = SIZE // 2
DIGIT = 26  # a scan's side in the mosaic: it sits at a random offset inside its cell


def write_mosaics(
    folder: Path, counts: tuple[int, int, int] = (2000, 500, 500), seed: int = 0
) -> Path:
    """``folder/labels.csv`` (columns image, labels, split) and the PNGs it names, ``counts``
    images for train, val and test; the same seed gives the same files."""
    from zoo.builtins.loaders import digits_arrays

    pixels, digits = digits_arrays()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits))
    pools = np.array_split(order, 3)
    scans = [
        Image.fromarray(p[0]).resize((DIGIT, DIGIT), Image.Resampling.BILINEAR) for p in pixels
    ]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count, pool in zip(("train", "val", "test"), counts, pools, strict=True):
        for _ in range(count):
            canvas = Image.new("L", (SIZE, SIZE))
            present = set()
            cells = rng.choice(4, size=int(rng.integers(1, 5)), replace=False)
            for cell in cells:
                scan = int(rng.choice(pool))
                x = (cell % 2) * CELL + int(rng.integers(0, CELL - DIGIT + 1))
                y = (cell // 2) * CELL + int(rng.integers(0, CELL - DIGIT + 1))
                canvas.paste(scans[scan], (x, y))
                present.add(int(digits[scan]))
            name = f"images/{len(rows):05d}.png"
            canvas.save(folder / name)
            rows.append((name, " ".join(str(d) for d in sorted(present)), split))
    table = folder / "labels.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "labels", "split"])
        writer.writerows(rows)
    return table
