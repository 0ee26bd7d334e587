"""The seed job in zoo and in Keras 3, whole processes: the Keras tutorial's CNN on the embedded
digits at 64 px, 10 epochs, batch 32, Adam (lr 1e-3), the same images and the same split.

Two roles in one file:

- ``--keras`` (run by a Python that has Keras 3, e.g. ``KERAS_BACKEND=torch``): the Keras
  script. It reads scikit-learn's digits file as zoo does (0-16 scaled to 0-255), resizes the
  8x8 scans to 64x64 with the same antialiased bilinear kernel (torch's, as zoo does), holds out
  zoo's seeded stratified 20% split, and trains the tutorial's ``Sequential`` model (valid 3x3
  convolutions 32/64/128 with 2x2 max-pooling, dense 128, dropout 0.5, softmax) with
  ``model.fit`` on the arrays, pixels rescaled by 1/255 as the tutorial does. It prints the
  parameter count, a checksum of its data and the final validation accuracy.
- the runner (default): times ``zoo train --arch simplecnn:padding=valid --image-size 64
  --batch-size 32`` (otherwise zoo's defaults: 10 epochs, Adam at 1e-3, digits, seed 0) and the
  Keras script in turn (A B A B ...) for ``--runs`` rounds after a warm-up round, and prints
  the median wall seconds, the median of the per-round ratios zoo / Keras (target: at most
  0.55) and both final validation accuracies. Without a Python that can import Keras
  (``--keras-python``, default ``$KERAS_PYTHON``), it says so and exits 0.

    python -m venv /tmp/keras && /tmp/keras/bin/pip install keras torch scikit-learn
    KERAS_PYTHON=/tmp/keras/bin/python python benchmarks/keras_seed.py --runs 5
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SIZE, EPOCHS, BATCH, SEED, VAL = 64, 10, 32, 0, 0.2


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 scans as uint8 [N, 8, 8] (0-16 scaled to 0-255) and labels."""
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations)), "datasets", "data", "digits.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    pixels = np.rint(table[:, :64] * (255 / 16)).astype(np.uint8).reshape(-1, 8, 8)
    return pixels, table[:, 64].astype(np.int64)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[list, list]:
    """zoo's split (zoo.data.splits.stratified_split): per class, a seeded shuffle."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for y in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == y)
        rng.shuffle(idx)
        n_val = max(min(len(idx) - 1, round(len(idx) * fraction)), 1)
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return sorted(train), sorted(val)


def keras_job() -> None:
    import keras
    import torch
    import torch.nn.functional as F
    from keras import layers

    pixels, labels = digits()
    x = torch.from_numpy(pixels)[:, None].float()
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    images = x.round_().clamp_(0, 255).to(torch.uint8)[:, 0].numpy()  # zoo's resize_tensors
    train, val = stratified_split(labels, VAL, SEED)
    x_train = images[train][..., None].astype("float32") / 255
    x_val = images[val][..., None].astype("float32") / 255
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(128, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        x_train,
        labels[train],
        batch_size=BATCH,
        epochs=EPOCHS,
        validation_data=(x_val, labels[val]),
        shuffle=True,
        verbose=2,
    )
    print(
        "KERAS "
        + json.dumps(
            {
                "params": model.count_params(),
                "backend": keras.backend.backend(),
                "keras": keras.__version__,
                "train_checksum": int(images[train].astype(np.int64).sum()),
                "train": len(train),
                "val": len(val),
                "val_accuracy": float(history.history["val_accuracy"][-1]),
            }
        )
    )


def zoo_checksum() -> dict[str, Any]:
    """What zoo trains on, for the comparison of the data."""
    import torch

    import zoo

    data = zoo.build("dataset", "digits", image_size=(SIZE, SIZE), seed=SEED, val_fraction=VAL)
    net = zoo.create_model(
        "simplecnn:padding=valid", num_classes=10, in_chans=1, image_size=(SIZE, SIZE)
    )
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "train_checksum": int(data.train.images.to(torch.int64).sum()),
        "train": len(data.train),
        "val": len(data.val),
    }


def keras_python(given: str | None) -> str | None:
    """A Python that imports keras (with the torch backend unless one is set), or None."""
    candidate = given or os.environ.get("KERAS_PYTHON") or sys.executable
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    probe = subprocess.run([candidate, "-c", "import keras"], capture_output=True, env=env)
    return candidate if probe.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras", action="store_true", help="run the Keras job here")
    parser.add_argument("--keras-python", help="a Python with Keras 3 (default $KERAS_PYTHON)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--zoo-args", default="", help="more zoo train options (one string)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.keras:
        keras_job()
        return 0
    python = keras_python(args.keras_python)
    if python is None:
        print("skipped: no Python with Keras 3 (set KERAS_PYTHON or --keras-python)")
        return 0
    from common import interleave, load, paired_ratio, summary, zoo_command

    before = load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "run")
        zoo_args = ["--arch", "simplecnn:padding=valid", "--image-size", str(SIZE)]
        zoo_args += ["--batch-size", str(BATCH), *args.zoo_args.split()]
        commands = {
            "zoo": (zoo_command("train", *zoo_args, "--out", str(out), "--overwrite"), None),
            "keras": (
                [python, __file__, "--keras"],
                {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")},
            ),
        }
        results = interleave(commands, runs=args.runs, warmup=1)
        keras_line = results["keras"].runs[-1].output.rsplit("KERAS ", 1)[1].splitlines()[0]
        keras_report = json.loads(keras_line)
        last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    report = {
        "zoo_command": "zoo train " + " ".join(zoo_args),
        "keras": keras_report,
        "zoo": {**zoo_checksum(), "val_accuracy": last["val_accuracy"]},
        "runs": summary(results),
        "ratio": round(paired_ratio(results["zoo"], results["keras"]), 3),
        "load_average": [before, load()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    k, z, r = report["keras"], report["zoo"], report["runs"]
    same = k["train_checksum"] == z["train_checksum"] and k["params"] == z["params"]
    print(f"load {before}-{load()}; {args.runs} rounds; {report['zoo_command']}")
    print(
        f"  zoo   {r['zoo']['wall_s']:.2f} s wall, {r['zoo']['cpu_s']:.2f} s CPU, "
        f"val accuracy {z['val_accuracy']:.4f}, {z['params']:,} parameters"
    )
    print(
        f"  keras {r['keras']['wall_s']:.2f} s wall, {r['keras']['cpu_s']:.2f} s CPU, "
        f"val accuracy {k['val_accuracy']:.4f}, {k['params']:,} parameters "
        f"(Keras {k['keras']}, {k['backend']} backend)"
    )
    print(f"  ratio zoo / keras {report['ratio']:.3f} (target <= 0.55); same data and net: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
