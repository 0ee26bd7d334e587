"""``zoo probe``: feature extraction against ``zoo benchmark`` inference for the same network,
and a second probe (features from the cache) against the first.

Offline: the weights are timm's networks with random weights (speed does not depend on their
values), written into a scratch Hugging Face cache as huggingface_hub lays one out.

1. Throughput, in this process, for each ``--arch``: ``zoo.tasks.benchmark.run`` (what
   ``zoo benchmark --no-train`` runs: warm-up steps, then timed steps on one synthetic batch)
   and ``zoo.probing.features.extract_features`` over ``--images`` in-memory images (what
   ``zoo probe`` runs on a dataset held in memory), in turn for ``--rounds`` rounds, same batch
   size, input size and precision. Ratio: extraction / benchmark, median of the rounds' ratios.
   The time a probe spends fitting on those features (the logistic regression's C search and
   the kNN, ``zoo.probing.linear.score``) is reported beside it.
2. Cache, whole processes: ``zoo probe --data DATA --arch ...`` with the feature cache emptied
   (the first probe), then the same command again (the second: features and scores from the
   cache), then once more with only the scores removed (features from the cache, fits redone),
   for ``--rounds`` rounds, after one warm-up probe (not counted: it fills zoo's registry cache
   and a folder's decoded images, which a user's first probe may or may not find). Ratios:
   second / first and refit / first, medians of the rounds'. ``--folder N`` probes N photo-like
   500x375 JPEGs in 10 classes instead of ``--data``.

    python benchmarks/probe.py
    python benchmarks/probe.py --arch resnet18.a1_in1k --arch mobilenetv3_small_050.lamb_in1k \\
        --folder 2000 --rounds 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import load, photo_folder, run, zoo_command


def hub_cache(folder: Path, names: list[str]) -> None:
    """timm's networks with random weights, as huggingface_hub caches ``timm/NAME``."""
    import timm
    import torch
    from timm.models import save_for_hf

    for name in names:
        repo = folder / f"models--timm--{name}"
        if (repo / "refs" / "main").is_file():
            continue
        commit = "0" * 40
        torch.manual_seed(0)
        net = timm.create_model(name.partition(".")[0])
        save_for_hf(net, repo / "snapshots" / commit, safe_serialization=True)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from zoo.data.splits import ImageTensors
    from zoo.models.finetune import pretrained_source
    from zoo.models.loading import weights_path
    from zoo.plugins.build import get_registry
    from zoo.probing.candidates import Candidate, head_classes, probe_size
    from zoo.probing.features import extract_features, load_backbone
    from zoo.probing.linear import score
    from zoo.tasks.benchmark import BenchConfig
    from zoo.tasks.benchmark import run as bench
    from zoo.train.runtime import resolve_device

    device = resolve_device(args.device)
    rows = []
    for name in args.arch:
        weights = get_registry().find_pretrained(name)
        size = probe_size(weights, args.image_size and (args.image_size, args.image_size))
        candidate = Candidate(weights, size)
        file = weights_path(pretrained_source(weights))
        backbone = load_backbone(candidate, file, 3, device, "auto")
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (args.images, 3, *size), dtype=torch.uint8, generator=g)
        labels = torch.arange(args.images) % 10
        train = ImageTensors(images, labels)
        val = ImageTensors(images[: args.batch_size], labels[: args.batch_size])
        config = BenchConfig(
            arch=name,
            batch_size=args.batch_size,
            image_size=size,
            num_classes=head_classes(weights),
            device=args.device,
            warmup=3,
            steps=args.steps,
            train=False,
        )
        extracted, benched, extracted_first = [], [], None
        load_before = load()
        for round_ in range(args.rounds):
            order = ("bench", "extract") if round_ % 2 == 0 else ("extract", "bench")
            for what in order:
                if what == "bench":
                    benched.append(bench(config)["inference"]["images_per_second"])
                else:
                    out = extract_features(
                        backbone, train, val, batch_size=args.batch_size, workers=0
                    )
                    extracted.append(out.images_per_second)
                    extracted_first = extracted_first or out
        assert extracted_first is not None
        t0 = time.perf_counter()
        score(extracted_first, 10, 0, device)
        fit_s = time.perf_counter() - t0
        rows.append(
            {
                "arch": name,
                "image_size": list(size),
                "batch_size": args.batch_size,
                "device": str(device),
                "precision": str(backbone.amp_dtype).removeprefix("torch."),
                "threads": torch.get_num_threads(),
                "benchmark_img_s": round(statistics.median(benched), 1),
                "extract_img_s": round(statistics.median(extracted), 1),
                "ratio": round(
                    statistics.median(e / b for e, b in zip(extracted, benched, strict=True)), 3
                ),
                "rounds": [
                    [round(b, 1), round(e, 1)] for b, e in zip(benched, extracted, strict=True)
                ],
                "features": int(extracted_first.train.shape[1]),
                "fit_s": round(fit_s, 2),
                "fit_images": args.images,
                "load": [load_before, load()],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def second_probe(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    features = Path(os.environ["ZOO_CACHE_DIR"]) / "features"
    base = ["probe", "--data", args.data, "--pretrained", "--batch-size", str(args.batch_size)]
    for name in args.arch:
        base += ["--arch", name]
    if args.image_size:
        base += ["--image-size", str(args.image_size)]
    walls: dict[str, list[float]] = {"first": [], "second": [], "refit": []}
    warm = run(zoo_command(*base, "--out", str(scratch / "probe-warm-up")))
    if warm.code != 0:
        raise SystemExit(f"zoo probe failed:\n{warm.output[-4000:]}")
    load_before = load()
    for round_ in range(args.rounds):
        for what in ("first", "second", "refit"):
            if what == "first":
                shutil.rmtree(features, ignore_errors=True)
            if what == "refit":
                for scores in features.glob("*.json"):
                    scores.unlink()
            out = scratch / f"probe-{round_}-{what}"
            r = run(zoo_command(*base, "--out", str(out)))
            if r.code != 0:
                raise SystemExit(f"zoo probe failed:\n{r.output[-4000:]}")
            walls[what].append(r.wall)
        print(json.dumps({k: [round(v, 2) for v in w] for k, w in walls.items()}), flush=True)

    def ratio(a: str) -> float:
        pairs = zip(walls[a], walls["first"], strict=True)
        return round(statistics.median(x / f for x, f in pairs), 3)

    return {
        "command": "zoo " + " ".join(base),
        "first_s": round(statistics.median(walls["first"]), 2),
        "second_s": round(statistics.median(walls["second"]), 2),
        "refit_s": round(statistics.median(walls["refit"]), 2),
        "second_over_first": ratio("second"),
        "refit_over_first": ratio("refit"),
        "walls": {k: [round(v, 2) for v in w] for k, w in walls.items()},
        "load": [load_before, load()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--arch", action="append", help="pretrained weights NAME.TAG (repeat; default: two)"
    )
    parser.add_argument("--data", default="digits", help="the second-probe part's --data")
    parser.add_argument("--folder", type=int, default=None, help="N photo-like JPEGs as --data")
    parser.add_argument("--image-size", type=int, default=None, help="default: the weights'")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=640, help="images extracted per round")
    parser.add_argument("--steps", type=int, default=10, help="zoo benchmark's timed steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    args.arch = args.arch or ["resnet18.a1_in1k", "mobilenetv3_small_050.lamb_in1k"]
    with tempfile.TemporaryDirectory(prefix="zoo-probe-bench-") as tmp:
        scratch = Path(tmp)
        os.environ.update(
            HF_HUB_CACHE=str(scratch / "hf"),
            HF_HUB_OFFLINE="1",
            ZOO_CACHE_DIR=str(scratch / "zoo-cache"),
        )
        hub_cache(scratch / "hf", args.arch)
        if args.folder:
            args.data = str(photo_folder(scratch / "photos", args.folder, classes=10))
        report: dict[str, Any] = {}
        if not args.skip_throughput:
            report["throughput"] = throughput(args)
        if not args.skip_cache:
            report["cache"] = second_probe(args, scratch)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for row in report.get("throughput", []):
        print(
            f"{row['arch']} {row['image_size'][0]}px batch {row['batch_size']} "
            f"{row['precision']}: zoo benchmark {row['benchmark_img_s']:,.1f} img/s, "
            f"extraction {row['extract_img_s']:,.1f} img/s, ratio {row['ratio']:.3f}; "
            f"fit {row['fit_s']:.2f}s on {row['features']} features (load {row['load']})"
        )
    if "cache" in report:
        c = report["cache"]
        print(
            f"{c['command']}: first {c['first_s']:.2f}s, second {c['second_s']:.2f}s "
            f"(ratio {c['second_over_first']:.3f}), scores refitted {c['refit_s']:.2f}s "
            f"(ratio {c['refit_over_first']:.3f}) (load {c['load']})"
        )


if __name__ == "__main__":
    main()
