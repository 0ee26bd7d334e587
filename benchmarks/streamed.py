"""A streamed folder: ``zoo train`` against the torchvision script a user would write, whole
processes, same images, same network, same workers, same resize.

The torchvision script (``--torchvision FOLDER``, this file): ``ImageFolder`` with
``Resize((S, S))``, ``ToTensor`` and ``Normalize`` (ImageNet's mean and std), a
``DataLoader`` with the same batch size, shuffling and number of workers (persistent, as zoo's
are), the same network built by ``zoo.create_model``, Adam at 1e-3 and cross-entropy, for the
same epochs; it holds out no validation split (zoo validates 20%, which only costs zoo).

``zoo train --data folder:root=FOLDER,max_memory_mb=1`` streams the same folder through
DataLoader workers from its decoded cache. The cache starts empty for every zoo run (it then
decodes each image once, in the first epoch); ``--warm-cache`` keeps it between runs, as a
user's second run of the same folder has it.

``--shards`` streams WebDataset shards of the same JPEGs instead (``zoo shard FOLDER SHARDS
--format jpg`` at the training size, written once before the runs): ``zoo train --data
wds:SHARDS`` with the same workers.

Both commands run in turn (A B A B ...) for ``--runs`` rounds after a warm-up round; printed:
median wall seconds and the median of the per-round ratios zoo / torchvision.

    python benchmarks/streamed.py --images 2000 --image-size 64 --epochs 3 --runs 3
    python benchmarks/streamed.py --images 2000 --image-size 64 --epochs 3 --runs 3 --shards
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import interleave, load, paired_ratio, photo_folder, run, summary, zoo_command


def torchvision_script(folder: str, size: int, epochs: int, batch: int, workers: int) -> None:
    import torch
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    import zoo

    dataset = datasets.ImageFolder(
        folder,
        transforms.Compose(
            [
                transforms.Resize((size, size)),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        ),
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    torch.manual_seed(0)
    model = zoo.create_model(
        "simplecnn", num_classes=len(dataset.classes), in_chans=3, image_size=size
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        model.train()
        seen = 0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
        print(f"epoch {epoch + 1}: {seen} images, loss {loss.item():.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torchvision", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm-cache", action="store_true", help="keep zoo's decoded cache")
    parser.add_argument("--shards", action="store_true", help="zoo streams WebDataset shards")
    parser.add_argument("--keep", type=Path, help="write the JPEG folder here and reuse it")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.torchvision:
        torchvision_script(
            args.torchvision, args.image_size, args.epochs, args.batch_size, args.workers
        )
        return 0
    if min(args.images, args.image_size, args.epochs, args.batch_size, args.runs) < 1:
        parser.error("sizes, counts and runs must be at least 1")
    before = load()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        photos = photo_folder((args.keep or tmp) / "photos", args.images)
        cache = tmp / "cache"
        common = ["--image-size", str(args.image_size), "--epochs", str(args.epochs)]
        common += ["--batch-size", str(args.batch_size)]
        data = f"folder:root={photos},max_memory_mb=1"
        if args.shards:
            shards = tmp / "shards"
            made = run(
                zoo_command(
                    "shard",
                    str(photos),
                    str(shards),
                    "--format",
                    "jpg",
                    "--image-size",
                    str(args.image_size),
                    "--shard-size",
                    "20MB",
                ),
                {"ZOO_CACHE_DIR": str(tmp / "shard-cache")},
            )
            if made.code != 0:
                raise SystemExit(made.output[-4000:])
            data = f"wds:{shards}"
        zoo_cmd = zoo_command(
            "train",
            "--data",
            data,
            *common,
            "--workers",
            str(args.workers),
            "--out",
            str(tmp / "run"),
            "--overwrite",
        )
        if not args.warm_cache and not args.shards:  # sh -c: empty the decoded cache, then exec zoo
            zoo_cmd = ["sh", "-c", f'rm -rf "{cache}/images" && exec "$@"', "sh", *zoo_cmd]
        tv_cmd = [sys.executable, __file__, "--torchvision", str(photos), *common[:4]]
        tv_cmd += ["--batch-size", str(args.batch_size), "--workers", str(args.workers)]
        env = {"ZOO_CACHE_DIR": str(cache)}
        results = interleave({"zoo": (zoo_cmd, env), "torchvision": (tv_cmd, env)}, args.runs)
        shutil.rmtree(cache, ignore_errors=True)
    report = {
        "images": args.images,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "workers": args.workers,
        "warm_cache": args.warm_cache,
        "shards": args.shards,
        "runs": summary(results),
        "ratio": round(paired_ratio(results["zoo"], results["torchvision"]), 3),
        "load_average": [before, load()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    r = report["runs"]
    print(
        f"{args.images} JPEGs{' as shards' if args.shards else ''} at {args.image_size} px, "
        f"{args.epochs} epochs, {args.workers} "
        f"workers, load {before}-{load()}: zoo {r['zoo']['wall_s']:.2f} s, torchvision "
        f"{r['torchvision']['wall_s']:.2f} s, ratio {report['ratio']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
