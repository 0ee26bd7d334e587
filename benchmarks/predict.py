"""``zoo predict`` against the loop a user would write by hand, whole processes, same images.

The hand loop (``--hand-loop RUN FOLDER``, this file) loads the same trained model with
``zoo.load``, then for batches of 64 files: PIL opens each, converts it to RGB and resizes it to
the model's input size, the batch is stacked, scaled to [0, 1], normalized with the model's
mean and std and run through the model; it prints each file's top-5 classes and probabilities
as CSV. ``zoo predict RUN FOLDER --csv`` prints the same.

The script writes ``--images`` photo-like JPEGs (500x375, or ``--photo-size W H``), trains a
model on them for one epoch (``--arch`` at ``--image-size``), then for each of ``--counts`` times
the two commands on a folder of that many of the images, in turn (A B A B ...) for ``--runs``
rounds: median wall seconds, and the median of the per-round ratios zoo / hand loop. Both
outputs are compared once before timing (same files, same top classes); that first run of
``zoo predict`` also measures and caches its inference engine (``zoo.models.engines``), as a
user's first run does, and its wall time is reported as ``first_run_s``.

    python benchmarks/predict.py --counts 10 100 1000 --runs 5            # large photos
    python benchmarks/predict.py --counts 1020 --photo-size 256 256 --runs 5   # small images
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import interleave, load, paired_ratio, photo_folder, run, summary, zoo_command

EXTENSIONS = {".jpg", ".jpeg", ".png"}


def hand_loop(run_dir: str, folder: str, batch_size: int = 64) -> None:
    """What a user writes: PIL, a resize, normalization, the model, batch by batch."""
    import numpy as np
    import torch
    from PIL import Image

    import zoo

    model = zoo.load(run_dir)
    h, w = model.image_size
    mean = torch.tensor(model.info.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.info.std).view(1, -1, 1, 1)
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in EXTENSIONS)
    out = sys.stdout
    with torch.inference_mode():
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            images = [
                np.asarray(Image.open(f).convert("RGB").resize((w, h), Image.Resampling.BILINEAR))
                for f in chunk
            ]
            x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
            probs = model((x - mean) / std).softmax(dim=1)
            top = probs.topk(min(5, probs.shape[1]), dim=1)
            for f, ps, ix in zip(chunk, top.values.tolist(), top.indices.tolist(), strict=True):
                cells = [f"{model.classes[i]},{p:.6f}" for p, i in zip(ps, ix, strict=True)]
                out.write(f"{f},{','.join(cells)}\n")


def top_classes(csv_text: str, zoo_format: bool) -> dict[str, list[str]]:
    """Each file's top classes from either command's CSV."""
    rows = {}
    for line in csv_text.splitlines():
        cells = line.split(",")
        if zoo_format and cells[0] == "path":
            continue
        if len(cells) > 2 and Path(cells[0]).suffix.lower() in EXTENSIONS:
            rows[cells[0]] = cells[1:11:2]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hand-loop", nargs=2, metavar=("RUN", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--images", type=int, default=None, help="JPEGs to write (max count)")
    parser.add_argument("--arch", default="simplecnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--photo-size",
        type=int,
        nargs=2,
        default=[500, 375],
        metavar=("W", "H"),
        help="the JPEGs' width and height",
    )
    parser.add_argument("--keep", type=Path, help="write the JPEG folder here and reuse it")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.hand_loop:
        hand_loop(*args.hand_loop)
        return 0
    if min(args.runs, args.image_size, *args.counts) < 1:
        parser.error("--runs, --image-size and --counts must be at least 1")
    images = max(args.images or 0, *args.counts, 8)
    before = load()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        env = {"ZOO_CACHE_DIR": str(tmp / "cache")}
        width, height = args.photo_size
        photos = photo_folder(
            (args.keep or tmp) / f"photos-{width}x{height}", images, width=width, height=height
        )
        model = tmp / "run"
        trained = run(
            zoo_command(
                "train",
                "--data",
                f"folder:root={photos}",
                "--arch",
                args.arch,
                "--image-size",
                str(args.image_size),
                "--epochs",
                "1",
                "--out",
                str(model),
            ),
            env,
        )
        if trained.code:
            sys.stderr.write(trained.output[-3000:])
            raise SystemExit("training the model failed")
        every = sorted(p for p in photos.rglob("*") if p.suffix.lower() in EXTENSIONS)
        for count in args.counts:
            folder = tmp / f"images-{count}"
            folder.mkdir()
            for f in every[:count]:
                os.symlink(f, folder / f.name)
            commands = {
                "zoo predict": (zoo_command("predict", str(model), str(folder), "--csv"), env),
                "hand loop": (
                    [sys.executable, __file__, "--hand-loop", str(model), str(folder)],
                    env,
                ),
            }
            first = run(*commands["zoo predict"])
            ours = top_classes(first.output, zoo_format=True)
            theirs = top_classes(run(*commands["hand loop"]).output, zoo_format=False)
            agree = sum(ours.get(k, [None])[0] == v[0] for k, v in theirs.items())
            results = interleave(commands, runs=args.runs, warmup=0)
            rows.append(
                {
                    "images": count,
                    **summary(results),
                    "ratio": round(paired_ratio(results["zoo predict"], results["hand loop"]), 3),
                    "first_run_s": round(first.wall, 3),
                    "files_predicted": [len(ours), len(theirs)],
                    "same_top_class": agree,
                }
            )
    report = {
        "arch": args.arch,
        "image_size": args.image_size,
        "photo_size": [width, height],
        "runs": args.runs,
        "load_average": [before, load()],
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{args.arch} at {args.image_size} px on {width}x{height} JPEGs; load {before}-{load()}; "
        f"{args.runs} rounds"
    )
    for r in rows:
        print(
            f"{r['images']:>6} images: zoo predict {r['zoo predict']['wall_s']:.2f} s, hand loop "
            f"{r['hand loop']['wall_s']:.2f} s, ratio {r['ratio']:.3f} (target <= 0.8 at 1,000 "
            f"images, <= 1 at 10); same top class for {r['same_top_class']} of "
            f"{r['files_predicted'][1]} files; the first zoo predict (measuring its engine) "
            f"{r['first_run_s']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
