"""Channels-last and bf16 autocast on this CPU: the figures behind zoo's CPU defaults.

Two parts:

- ``zoo benchmark`` (synthetic inputs, in this process) for each ``--arch`` at its size and
  batch, in the four settings fp32 / bf16 x contiguous / channels-last, interleaved over
  ``--rounds`` rounds (every round runs each setting once, the order rotating, so load that
  comes and goes falls on all four). Training and inference images per second (medians) and
  each setting's ratio of time to fp32 contiguous (below 1: faster).
- Whole ``zoo train`` runs of the seed job (simplecnn on the embedded digits at 64 px, 10
  epochs, batch 32, Adam) in the same four settings and with no setting given (zoo's
  defaults), interleaved, each its own process: wall seconds (median), the ratio to fp32
  contiguous, and each setting's final validation accuracy (the runs are seeded: bf16 must not
  lower it).

    python benchmarks/cpu_defaults.py --rounds 3
    python benchmarks/cpu_defaults.py --no-train-runs --arch resnet18:64:64 --rounds 5

``--arch NAME:SIZE:BATCH`` (repeatable) chooses the networks (zoo-timm provides resnet18 and
the ViT); the defaults are the seed job's simplecnn (1 channel, 10 classes), resnet18 at 64 px
and timm's vit_tiny at 64 px with 8-pixel patches (64 tokens).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import interleave, load, paired_ratio, summary, zoo_command

SETTINGS = {
    "fp32": ("fp32", False),
    "fp32 + channels-last": ("fp32", True),
    "bf16": ("bf16", False),
    "bf16 + channels-last": ("bf16", True),
}
ARCHS = [
    "simplecnn:64:32:1:10",
    "resnet18:64:64",
    "vit_tiny_patch16_224,patch_size=8:64:32",
]
SEED_JOB = ["--arch", "simplecnn", "--image-size", "64", "--epochs", "10", "--batch-size", "32"]


def microbenchmarks(specs: list[str], rounds: int, steps: int) -> list[dict[str, Any]]:
    """``zoo benchmark`` in the four settings for each architecture."""
    import torch

    from zoo.tasks.benchmark import BenchConfig, run
    from zoo.train.allocator import keep_freed_memory

    keep_freed_memory()  # as zoo benchmark does
    rows = []
    for spec in specs:
        name, size, batch, *rest = spec.split(":")
        in_chans, classes = (int(rest[0]), int(rest[1])) if rest else (3, 1000)
        arch = name.replace(",", ":", 1)  # NAME,k=v on the command line: NAME:k=v
        figures: dict[str, dict[str, list[float]]] = {
            s: {"train": [], "infer": []} for s in SETTINGS
        }
        for r in range(rounds):
            order = list(SETTINGS)[r % 4 :] + list(SETTINGS)[: r % 4]
            for setting in order:
                precision, channels_last = SETTINGS[setting]
                report = run(
                    BenchConfig(
                        arch=arch,
                        batch_size=int(batch),
                        image_size=(int(size), int(size)),
                        in_chans=in_chans,
                        num_classes=classes,
                        device="cpu",
                        amp=precision == "bf16",
                        channels_last=channels_last,
                        warmup=2,
                        steps=steps,
                    )
                )
                figures[setting]["train"].append(report["train"]["images_per_second"])
                figures[setting]["infer"].append(report["inference"]["images_per_second"])
        base = figures["fp32"]
        for setting, f in figures.items():
            train, infer = statistics.median(f["train"]), statistics.median(f["infer"])
            rows.append(
                {
                    "arch": arch,
                    "image_size": int(size),
                    "batch_size": int(batch),
                    "setting": setting,
                    "train_images_per_second": round(train, 1),
                    "inference_images_per_second": round(infer, 1),
                    # Time ratios to fp32 contiguous, pair by pair (same round).
                    "train_time_ratio": round(
                        statistics.median(
                            b / a for a, b in zip(f["train"], base["train"], strict=True)
                        ),
                        3,
                    ),
                    "inference_time_ratio": round(
                        statistics.median(
                            b / a for a, b in zip(f["infer"], base["infer"], strict=True)
                        ),
                        3,
                    ),
                    "threads": torch.get_num_threads(),
                }
            )
    return rows


def train_runs(rounds: int, epochs: int) -> dict[str, Any]:
    """Whole ``zoo train`` processes of the seed job in each setting and with the defaults."""
    job = [*SEED_JOB]
    job[job.index("--epochs") + 1] = str(epochs)
    with tempfile.TemporaryDirectory() as tmp:
        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        outs = {}
        for setting, (precision, channels_last) in [
            *SETTINGS.items(),
            ("zoo defaults", (None, None)),
        ]:
            out = Path(tmp, setting.replace(" ", "_").replace("+", ""))
            outs[setting] = out
            flags = (
                []
                if channels_last is None
                else [
                    "--precision",
                    precision,
                    "--channels-last" if channels_last else "--no-channels-last",
                ]
            )
            commands[setting] = (
                zoo_command("train", *job, *flags, "--out", str(out), "--overwrite"),
                {"ZOO_CACHE_DIR": str(Path(tmp, "cache"))},
            )
        results = interleave(commands, runs=rounds, warmup=1)
        accuracy = {}
        for setting, out in outs.items():
            last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
            accuracy[setting] = last["val_accuracy"]
    base = results["fp32"]
    return {
        "command": "zoo train " + " ".join(job),
        "runs": summary(results),
        "time_ratio_to_fp32": {
            name: round(paired_ratio(series, base), 3) for name, series in results.items()
        },
        "final_val_accuracy": accuracy,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", help="NAME:SIZE:BATCH[:CHANS:CLASSES]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per benchmark")
    parser.add_argument("--epochs", type=int, default=10, help="of the seed job")
    parser.add_argument("--no-benchmark", action="store_true", help="skip zoo benchmark")
    parser.add_argument("--no-train-runs", action="store_true", help="skip the zoo train runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps, args.epochs) < 1:
        parser.error("--rounds, --steps and --epochs must be at least 1")
    from zoo.device.cpu import cpu_features

    before = load()
    report: dict[str, Any] = {"cpu": sorted(cpu_features())}
    if not args.no_benchmark:
        report["benchmark"] = microbenchmarks(args.arch or ARCHS, args.rounds, args.steps)
    if not args.no_train_runs:
        report["train"] = train_runs(args.rounds, args.epochs)
    report["load_average"] = [before, load()]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"load {before}-{load()}; CPU features: {', '.join(report['cpu'])}")
    for row in report.get("benchmark", []):
        print(
            f"{row['arch']} {row['image_size']} px batch {row['batch_size']} {row['setting']:<22}"
            f" train {row['train_images_per_second']:8.1f} img/s (x{row['train_time_ratio']:.3f})"
            f"  inference {row['inference_images_per_second']:8.1f} img/s"
            f" (x{row['inference_time_ratio']:.3f})"
        )
    if "train" in report:
        t = report["train"]
        print(t["command"])
        for name, r in t["runs"].items():
            print(
                f"  {name:<22} {r['wall_s']:7.2f} s (x{t['time_ratio_to_fp32'][name]:.3f})"
                f"  final val accuracy {t['final_val_accuracy'][name]:.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
