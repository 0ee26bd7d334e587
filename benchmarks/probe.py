"""``zoo probe``: feature extraction against ``zoo benchmark`` inference for the same network,
and a second probe (features from the cache) against the first.

Offline: the weights are timm's networks with random weights (speed does not depend on their
values), written into a scratch Hugging Face cache as huggingface_hub lays one out.

1. Throughput, in this process, for each ``--arch``: ``zoo.tasks.benchmark.run`` (what
   ``zoo benchmark --no-train`` runs: ``--warmup`` steps, then ``--steps`` timed steps on one
   synthetic batch)
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
3. The fit (``--fit``), in this process: on each ``--arch``'s features of the embedded digits at
   32 px (1,438 training images), ``zoo.probing.linear.score`` (torch's L-BFGS) against the
   same search with scikit-learn (``LogisticRegression`` and ``KNeighborsClassifier``: the
   same held-out split, the same C grid, tolerance and iteration limit, warm starts), CPU
   seconds of each and both accuracies.
4. The one-vs-rest fit (``--fit-multilabel``), in this process: on each ``--arch``'s features of
   digit mosaics at 32 px (tests/mosaics.py: 1-4 real scans per image, labelled with the digits
   present; ``--mosaics`` train and validation images), ``zoo.probing.multilabel.score``
   against the same search with scikit-learn (``OneVsRestClassifier(LogisticRegression)`` at
   each C of the grid on the same held-out split, the same tolerance and iteration limit, no
   warm starts: the wrapper refits clones; thresholds chosen by zoo.labeling on the held-out
   part; ``KNeighborsClassifier.predict_proba`` on the label vectors): CPU seconds of each,
   both mAPs and their difference, micro F1, the kNN's mAP.

    python benchmarks/probe.py
    python benchmarks/probe.py --arch resnet18.a1_in1k --arch mobilenetv3_small_050.lamb_in1k \\
        --folder 2000 --rounds 3 --json
    python benchmarks/probe.py --fit --skip-throughput --skip-cache
    python benchmarks/probe.py --fit-multilabel --skip-throughput --skip-cache
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, load, photo_folder, run, zoo_command

sys.path.insert(0, str(REPO / "tests"))  # tests/mosaics.py, shared with the tests


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
    from zoo.device.placement import resolve_device
    from zoo.models.hub import pretrained_source
    from zoo.models.loading import weights_path
    from zoo.plugins.build import get_registry
    from zoo.probing.candidates import Candidate, head_classes, probe_size
    from zoo.probing.features import extract_features, load_backbone
    from zoo.probing.linear import score
    from zoo.tasks.benchmark import BenchConfig
    from zoo.tasks.benchmark import run as bench

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
            warmup=args.warmup,
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


def scikit_learn_score(extracted: Any, num_classes: int, seed: int) -> dict[str, float]:
    """``zoo.probing.linear.score``'s search, done by scikit-learn."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from zoo.data.splits import stratified_split
    from zoo.probing import linear

    x, y = extracted.train.numpy(), extracted.train_labels.numpy()
    vx, vy = extracted.val.numpy(), extracted.val_labels.numpy()
    fit_idx, held_idx = stratified_split(y.tolist(), linear.HELD_OUT, seed)
    scaler = StandardScaler().fit(x[fit_idx])
    fx, hx = scaler.transform(x[fit_idx]), scaler.transform(x[held_idx])
    model = LogisticRegression(max_iter=linear.MAX_ITER, tol=linear.TOLERANCE, warm_start=True)
    best, chosen = (-1.0, 0.0), linear.C_GRID[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in linear.C_GRID:
            model.set_params(C=c).fit(fx, y[fit_idx])
            held = (model.score(hx, y[held_idx]), -log_loss(y[held_idx], model.predict_proba(hx)))
            if held > best:
                best, chosen = held, c
        scaler = StandardScaler().fit(x)
        final = LogisticRegression(C=chosen, max_iter=linear.MAX_ITER, tol=linear.TOLERANCE)
        final.fit(scaler.transform(x), y)
    knn = KNeighborsClassifier(n_neighbors=min(linear.KNN_K, len(x)), metric="cosine").fit(x, y)
    return {
        "accuracy": float(final.score(scaler.transform(vx), vy)),
        "knn_accuracy": float(knn.score(vx, vy)),
        "C": chosen,
        "classes": int(np.unique(y).size),
    }


def fit_compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch
    from safetensors.torch import load_file

    import zoo
    from zoo.probing import cache
    from zoo.probing.features import Extracted
    from zoo.probing.linear import score

    rows = []
    for name in args.arch:
        before = set(cache.folder().glob("*.safetensors"))
        zoo.probe("digits", name, image_size=32, batch_size=args.batch_size)
        (file,) = set(cache.folder().glob("*.safetensors")) - before
        t = load_file(str(file))
        extracted = Extracted(t["train"], t["train_labels"], t["val"], t["val_labels"], 0.0, 0.0)
        c0 = time.process_time()
        ours = score(extracted, 10, 0)
        ours_cpu = time.process_time() - c0
        c0 = time.process_time()
        theirs = scikit_learn_score(extracted, 10, 0)
        theirs_cpu = time.process_time() - c0
        rows.append(
            {
                "arch": name,
                "features": list(t["train"].shape),
                "torch_cpu_s": round(ours_cpu, 2),
                "sklearn_cpu_s": round(theirs_cpu, 2),
                "torch_accuracy": round(ours.accuracy, 4),
                "sklearn_accuracy": round(theirs["accuracy"], 4),
                "torch_C": ours.C,
                "sklearn_C": theirs["C"],
                "torch_knn": round(ours.knn_accuracy, 4),
                "sklearn_knn": round(theirs["knn_accuracy"], 4),
                "threads": torch.get_num_threads(),
                "load": load(),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def scikit_learn_multilabel(extracted: Any, seed: int) -> dict[str, Any]:
    """``zoo.probing.multilabel.score``'s search, done by scikit-learn."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from zoo.data.splits import stratified_split
    from zoo.labeling.label_sets import at_thresholds, average_precision, choose_thresholds, mean_ap
    from zoo.probing import linear

    # In float64, as scikit-learn solves by default (float32 features would round its
    # probabilities to 0 and 1, and the held-out loss that breaks ties to infinity).
    x, y = extracted.train.double().numpy(), extracted.train_labels.double().numpy()
    vx, vy = extracted.val.double().numpy(), extracted.val_labels.double().numpy()
    lists = [np.flatnonzero(row).tolist() for row in y]
    fit_idx, held_idx = stratified_split(lists, linear.HELD_OUT, seed)
    scaler = StandardScaler().fit(x[fit_idx])
    fx, hx = scaler.transform(x[fit_idx]), scaler.transform(x[held_idx])
    hy = y[held_idx]

    def model(c: float) -> Any:
        binary = LogisticRegression(C=c, max_iter=linear.MAX_ITER, tol=linear.TOLERANCE)
        return OneVsRestClassifier(binary)

    best, chosen, chosen_p = (-1.0, 0.0), linear.C_GRID[0], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in linear.C_GRID:
            p = np.clip(model(c).fit(fx, y[fit_idx]).predict_proba(hx), 1e-12, 1 - 1e-12)
            bce = -np.mean(hy * np.log(p) + (1 - hy) * np.log(1 - p))
            held = (mean_ap(average_precision(p, hy)), -bce)
            if held > best:
                best, chosen, chosen_p = held, c, p
        thresholds = choose_thresholds(chosen_p, hy)
        scaler = StandardScaler().fit(x)
        final = model(chosen).fit(scaler.transform(x), y)
    probs = final.predict_proba(scaler.transform(vx))
    knn = KNeighborsClassifier(n_neighbors=min(linear.KNN_K, len(x)), metric="cosine").fit(x, y)
    shares = np.stack(
        [
            p[:, list(classes).index(1)] if 1 in classes else np.zeros(len(vx))
            for p, classes in zip(knn.predict_proba(vx), knn.classes_, strict=True)
        ],
        axis=1,
    )
    return {
        "map": mean_ap(average_precision(probs, vy)),
        "f1_micro": at_thresholds(probs, vy, thresholds)["f1_micro"],
        "knn_map": mean_ap(average_precision(shares, vy)),
        "C": chosen,
    }


def fit_compare_multilabel(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    import torch
    from mosaics import write_mosaics
    from safetensors.torch import load_file

    import zoo
    from zoo.probing import cache
    from zoo.probing.features import Extracted
    from zoo.probing.multilabel import score

    train, val = (int(n) for n in args.mosaics.split(","))
    table = write_mosaics(scratch / "mosaics", counts=(train, val, 0))
    rows = []
    for name in args.arch:
        before = set(cache.folder().glob("*.safetensors"))
        zoo.probe(str(table), name, image_size=32, batch_size=args.batch_size)
        (file,) = set(cache.folder().glob("*.safetensors")) - before
        t = load_file(str(file))
        extracted = Extracted(t["train"], t["train_labels"], t["val"], t["val_labels"], 0.0, 0.0)
        classes = int(t["train_labels"].shape[1])
        c0 = time.process_time()
        ours = score(extracted, classes, 0)
        ours_cpu = time.process_time() - c0
        c0 = time.process_time()
        theirs = scikit_learn_multilabel(extracted, 0)
        theirs_cpu = time.process_time() - c0
        rows.append(
            {
                "arch": name,
                "features": list(t["train"].shape),
                "labels": classes,
                "torch_cpu_s": round(ours_cpu, 2),
                "sklearn_cpu_s": round(theirs_cpu, 2),
                "torch_map": round(ours.map, 4),
                "sklearn_map": round(theirs["map"], 4),
                "map_difference": round(ours.map - theirs["map"], 4),
                "torch_C": ours.C,
                "sklearn_C": theirs["C"],
                "torch_f1_micro": round(ours.f1_micro, 4),
                "sklearn_f1_micro": round(theirs["f1_micro"], 4),
                "torch_knn_map": round(ours.knn_map, 4),
                "sklearn_knn_map": round(theirs["knn_map"], 4),
                "threads": torch.get_num_threads(),
                "load": load(),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


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
    parser.add_argument("--warmup", type=int, default=1, help="zoo benchmark's warm-up steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--fit", action="store_true", help="also compare the fit with sklearn")
    parser.add_argument(
        "--fit-multilabel",
        action="store_true",
        help="also compare the one-vs-rest fit with sklearn on digit mosaics",
    )
    parser.add_argument("--mosaics", default="1000,300", help="train,val mosaics for the above")
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
        if args.fit:
            report["fit"] = fit_compare(args)
        if args.fit_multilabel:
            report["fit_multilabel"] = fit_compare_multilabel(args, scratch)
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
    for row in report.get("fit", []):
        print(
            f"fit on {row['arch']}'s features {row['features']}: torch {row['torch_cpu_s']:.2f} "
            f"CPU s (accuracy {row['torch_accuracy']}, C {row['torch_C']:g}), scikit-learn "
            f"{row['sklearn_cpu_s']:.2f} CPU s (accuracy {row['sklearn_accuracy']}, C "
            f"{row['sklearn_C']:g}) (load {row['load']})"
        )
    for row in report.get("fit_multilabel", []):
        print(
            f"one-vs-rest fit on {row['arch']}'s mosaic features {row['features']}: torch "
            f"{row['torch_cpu_s']:.2f} CPU s (mAP {row['torch_map']}, C {row['torch_C']:g}, "
            f"micro F1 {row['torch_f1_micro']}, kNN mAP {row['torch_knn_map']}), scikit-learn "
            f"{row['sklearn_cpu_s']:.2f} CPU s (mAP {row['sklearn_map']}, C "
            f"{row['sklearn_C']:g}, micro F1 {row['sklearn_f1_micro']}, kNN mAP "
            f"{row['sklearn_knn_map']}); mAP difference {row['map_difference']:+.4f} "
            f"(load {row['load']})"
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
