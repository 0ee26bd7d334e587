"""The same JPEGs as a folder, as a table and as a Hugging Face parquet dataset: ``zoo train``
on each, whole processes in turn (folder, table, hf, ...), with the decoded cache emptied before
every run (each run decodes every image once, as a first run does).

- folder: ``--data PHOTOS`` (class folders);
- table: ``--data PHOTOS/labels.csv`` (a CSV of file names and labels, in the folder's order);
- hf: ``--data hf:DIR``, a parquet dataset written by ``datasets`` holding the JPEG bytes (its
  Arrow cache is made in the warm-up round, as a user's first load makes it).

Printed: median wall seconds of each and the medians of the per-round ratios table / folder
and hf / folder (the issue's targets: at most 1.05 and 1.1).

    python benchmarks/sources.py --images 8000 --image-size 64 --epochs 2 --runs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

from common import interleave, load, paired_ratio, photo_folder, summary, zoo_command


def write_table(photos: Path) -> Path:
    files = sorted(photos.rglob("*.jpg"))
    table = photos / "labels.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label"])
        writer.writerows([[str(p.relative_to(photos)), p.parent.name] for p in files])
    return table


def write_parquet(photos: Path, out: Path) -> Path:
    import datasets

    files = sorted(photos.rglob("*.jpg"))
    names = sorted({p.parent.name for p in files})
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": p.read_bytes(), "path": None} for p in files],
            "label": [names.index(p.parent.name) for p in files],
        },
        features=features,
    )
    (out / "data").mkdir(parents=True, exist_ok=True)
    ds.to_parquet(out / "data" / "train-00000-of-00001.parquet")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the JPEG folder here and reuse it")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    before = load()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        photos = photo_folder((args.keep or tmp) / "photos", args.images)
        table = write_table(photos)
        parquet = write_parquet(photos, tmp / "parquet")
        cache = tmp / "cache"
        common = ["--image-size", str(args.image_size), "--epochs", str(args.epochs)]
        common += ["--batch-size", str(args.batch_size), "--out", str(tmp / "run"), "--overwrite"]
        env = {"ZOO_CACHE_DIR": str(cache), "HF_HOME": str(tmp / "hf")}

        def cold(data: str) -> list[str]:  # sh -c: empty the decoded cache, then exec zoo
            cmd = zoo_command("train", "--data", data, *common)
            return ["sh", "-c", f'rm -rf "{cache}/images" && exec "$@"', "sh", *cmd]

        commands = {
            "folder": (cold(str(photos)), env),
            "table": (cold(str(table)), env),
            "hf": (cold(f"hf:{parquet}"), env),
        }
        results = interleave(commands, args.runs)
    report = {
        "images": args.images,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "runs": summary(results),
        "table_over_folder": round(paired_ratio(results["table"], results["folder"]), 3),
        "hf_over_folder": round(paired_ratio(results["hf"], results["folder"]), 3),
        "load_average": [before, load()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    r = report["runs"]
    print(
        f"{args.images} JPEGs at {args.image_size} px, {args.epochs} epochs, load "
        f"{before}-{load()}: folder {r['folder']['wall_s']:.2f} s, table "
        f"{r['table']['wall_s']:.2f} s (ratio {report['table_over_folder']:.3f}), hf "
        f"{r['hf']['wall_s']:.2f} s (ratio {report['hf_over_folder']:.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
