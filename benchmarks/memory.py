"""Resident memory of ``zoo train`` runs, each its own process: does anything grow from epoch
to epoch, does zoo report the peak ``/usr/bin/time -v`` sees, and what does holding a folder in
memory cost over streaming it?

Three runs, each with a fresh decoded cache (and the registry cache built beforehand):

- the embedded digits (held in memory) for ``--epochs`` epochs: the resident memory after
  every epoch (``rss_mb`` in metrics.jsonl), its growth from the end of epoch 2 to the last
  epoch and over the second half (where a leak would still show and one-off allocations no
  longer do);
- a folder of ``--images`` photo-like JPEGs at ``--image-size``, streamed through DataLoader
  workers (``folder:max_memory_mb=1``), and the same folder held in memory (the default), for
  ``--folder-epochs`` epochs.

For each: the peak zoo reports (summary.json ``memory``: the process and, streamed, its
largest loader worker) and the peak of the whole process tree as ``/usr/bin/time -v`` reports
it (``ru_maxrss`` from ``wait4``). The check: the in-memory folder run's peak is at most 1.1 x
(the streamed run's peak + the decoded images' own size).

    python benchmarks/memory.py --epochs 20 --images 3000 --image-size 128
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import load, photo_folder, run, zoo_command


def train(tmp: Path, name: str, epochs: int, *args: str) -> dict[str, Any]:
    out = tmp / name
    cache = tmp / "cache"
    shutil.rmtree(cache / "images", ignore_errors=True)  # a fresh decoded cache for each run
    cmd = zoo_command("train", "--epochs", str(epochs), "--out", str(out), "--overwrite", *args)
    r = run(cmd, env={"ZOO_CACHE_DIR": str(cache)}, cwd=tmp)
    if r.code != 0:
        sys.stderr.write(r.output[-4000:])
        raise SystemExit(f"{name}: zoo train failed (exit {r.code})")
    summary = json.loads((out / "summary.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rss = [h["rss_mb"] for h in history]
    base = rss[1] if len(rss) > 1 else rss[0]
    return {
        "rss_mb": rss,
        "growth_mb": round(rss[-1] - base, 1),
        "second_half_growth_mb": round(rss[-1] - rss[max(0, len(rss) // 2 - 1)], 1),
        "reported": summary["memory"],
        "time_v_peak_mb": round(r.peak_mb, 1),
        "decoded_images": [h.get("decoded_images") for h in history],
        "wall_s": round(r.wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="of the digits run")
    parser.add_argument("--images", type=int, default=3000, help="JPEGs in the folder")
    parser.add_argument("--image-size", type=int, default=128, help="for the folder runs")
    parser.add_argument("--folder-epochs", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the JPEG folder here and reuse it")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.epochs, args.image_size, args.folder_epochs) < 1 or args.images < 8:
        parser.error("--epochs, --image-size, --folder-epochs must be at least 1, --images 8")
    before = load()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        photos = photo_folder((args.keep or tmp) / "photos", args.images)
        folder = f"folder:root={photos}"
        # Build the registry cache first, so that no run pays for (or holds) the plugins'
        # imports that building it needs.
        run(zoo_command("list", "--json"), env={"ZOO_CACHE_DIR": str(tmp / "cache")})
        size = str(args.image_size)
        runs = {
            "digits, in memory": train(tmp, "digits", args.epochs, "--image-size", "32"),
            "folder, in memory": train(
                tmp, "held", args.folder_epochs, "--data", folder, "--image-size", size
            ),
            "folder, streamed": train(
                tmp,
                "streamed",
                args.folder_epochs,
                "--data",
                f"{folder},max_memory_mb=1",
                "--image-size",
                size,
            ),
        }
    decoded_mb = args.images * 3 * args.image_size**2 / 2**20
    held = runs["folder, in memory"]["reported"]["peak_rss_mb"]
    streamed = runs["folder, streamed"]["reported"]["peak_rss_mb"]
    report = {
        "images": args.images,
        "image_size": args.image_size,
        "decoded_mb": round(decoded_mb, 1),
        "load_average": [before, load()],
        "runs": runs,
        "in_memory_over_streamed_plus_decoded": round(held / (streamed + decoded_mb), 3),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"load {before}-{load()}; {args.images} JPEGs at {size} px = {decoded_mb:.0f} MB decoded")
    for name, r in runs.items():
        rep = r["reported"]
        workers = rep.get("workers_peak_rss_mb")
        workers = f", loader workers {workers:.0f}" if workers is not None else ""
        print(
            f"{name}: rss after each epoch {r['rss_mb']} MB; growth from epoch 2 "
            f"{r['growth_mb']:+.1f} MB (second half {r['second_half_growth_mb']:+.1f} MB); "
            f"peak reported {rep['peak_rss_mb']:.0f} MB{workers}; /usr/bin/time -v "
            f"{r['time_v_peak_mb']:.0f} MB"
        )
    print(
        f"in-memory folder peak / (streamed peak + decoded size) = "
        f"{held:.0f} / ({streamed:.0f} + {decoded_mb:.0f}) = "
        f"{report['in_memory_over_streamed_plus_decoded']:.3f} (target <= 1.10)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
