"""Multi-label quality: zoo's defaults against a hand-written PyTorch loop, on the same digit
mosaics (tests/mosaics.py: 64x64 images of 1-4 real digit scans in a 2x2 grid, labelled with
the digits present; 2,000 train, 500 val and 500 test images, each split drawing its scans
from its own third of scikit-learn's 1,797).

zoo: ``zoo train --data labels.csv --image-size 64 --epochs 20``, nothing else, then ``zoo
eval RUN --split test``: its micro F1 at the thresholds the weights record.

Baseline, measured in the same run: the issue's hand-written loop, the seed CNN's shape (the
Keras tutorial CNN: conv 32/64/128 with max-pooling, flatten, dense 128, dropout 0.5), BCE with
logits, Adam at 1e-3, batches of 64, every label at probability 0.5, trained on the training
split alone; its test micro F1 after 10 and 20 epochs.

    python benchmarks/multilabel.py [--epochs 20] [--counts 2000,500,500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def zoo_run(table: Path, work: Path, epochs: int) -> tuple[float, float]:
    """zoo's test micro F1 with its defaults, and the seconds the training took."""
    zoo = [sys.executable, "-m", "zoo"]
    run = work / "zoo-run"
    started = time.perf_counter()
    train = [*zoo, "train", "--data", str(table), "--image-size", "64", "--epochs", str(epochs)]
    subprocess.run([*train, "--out", str(run)], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    subprocess.run(
        [*zoo, "eval", str(run), "--split", "test", "--no-plots", "--top-losses", "0"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    report = json.loads((run / "eval.json").read_text())
    return float(report["micro"]["f1"]), seconds


def load(table: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each split's images (float32 [N, 1, 64, 64] in [0, 1]) and label vectors [N, 10]."""
    import csv

    from PIL import Image

    rows = list(csv.DictReader(table.open()))
    out = {}
    for split in ("train", "val", "test"):
        chosen = [r for r in rows if r["split"] == split]
        images = np.stack(
            [np.asarray(Image.open(table.parent / r["image"]), np.float32) / 255 for r in chosen]
        )[:, None]
        labels = np.zeros((len(chosen), 10), np.float32)
        for i, r in enumerate(chosen):
            labels[i, [int(d) for d in r["labels"].split()]] = 1
        out[split] = (images, labels)
    return out


def baseline(table: Path, epochs: int, report_at: tuple[int, ...]) -> dict[int, float]:
    """The hand-written loop's test micro F1 after each epoch in ``report_at``."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    data = load(table)
    net = nn.Sequential(
        *(
            layer
            for c_in, c_out in ((1, 32), (32, 64), (64, 128))
            for layer in (nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        ),
        nn.Flatten(),
        nn.Linear(128 * 8 * 8, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    x, y = (torch.from_numpy(a) for a in data["train"])
    tx, ty = (torch.from_numpy(a) for a in data["test"])
    found = {}
    for epoch in range(1, epochs + 1):
        net.train()
        for idx in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            optimizer.step()
        if epoch in report_at:
            net.eval()
            with torch.no_grad():
                predicted = net(tx).sigmoid() >= 0.5
            truth = ty > 0.5
            tp = (predicted & truth).sum().item()
            fp = (predicted & ~truth).sum().item()
            fn = (~predicted & truth).sum().item()
            found[epoch] = 2 * tp / max(2 * tp + fp + fn, 1)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--counts", default="2000,500,500")
    args = parser.parse_args()
    from mosaics import write_mosaics

    counts = tuple(int(c) for c in args.counts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("ZOO_CACHE_DIR", str(work / "cache"))
        table = write_mosaics(work / "mosaics", counts)  # type: ignore[arg-type]
        f1, seconds = zoo_run(table, work, args.epochs)
        marks = tuple(sorted({min(10, args.epochs), args.epochs}))
        started = time.perf_counter()
        base = baseline(table, args.epochs, marks)
        base_seconds = time.perf_counter() - started
    print(f"digit mosaics {counts[0]}/{counts[1]}/{counts[2]} (train/val/test), 64x64, 10 labels")
    print(f"{'':<44}{'test micro F1':>14}{'seconds':>9}")
    print(
        f"{'zoo train (defaults), ' + str(args.epochs) + ' epochs':<44}{f1:>14.4f}{seconds:>9.0f}"
    )
    for epoch in marks:
        name = f"hand-written loop (BCE, Adam, 0.5), {epoch} epochs"
        shown = f"{base_seconds:>9.0f}" if epoch == args.epochs else ""
        print(f"{name:<44}{base[epoch]:>14.4f}{shown}")
    print(f"zoo / hand-written at {args.epochs} epochs: {f1 / base[args.epochs]:.3f}")


if __name__ == "__main__":
    main()
