"""zoo's framework overhead: ``zoo train`` against a bare hand-written PyTorch loop.

Both train the same network (built by ``zoo.create_model`` from the same seed) on the same data
(the embedded digits at ``--image-size``), with the same batch size, optimizer (Adam, lr 1e-3),
epochs, seed and thread count, in one process. zoo runs through its ``Trainer`` exactly as
``zoo train`` does, with the progress bar drawn to a terminal (written to /dev/null). The bare
loop gets the training images preloaded as normalized float tensors on the device and does only
randperm, index, forward, loss, backward, step.

The bare loop also draws the same batch order and dropout masks as zoo (from zoo's per-epoch
seeds) and its inputs are normalized by the same formula, so on the CPU both compute the same
weights, bit for bit (``same_weights`` in the report). A difference in time is then zoo's
overhead and nothing else: two models on different trajectories can differ in speed by several
percent (denormal numbers, for one), which measured runs showed in both directions.

Timings are training seconds per epoch; neither side's validation is timed (zoo validates and
writes checkpoints after each epoch; the bare loop does neither). The two are interleaved so
that a change in the machine's load hits both:

- ``--interleave step`` (the default on the CPU): one bare step runs after each zoo step, from
  zoo's per-step progress callback. zoo's epoch time is the epoch's wall time (as zoo measures
  it) minus the bare steps timed inside it. Load that comes and goes within seconds then
  falls on both loops alike.
- ``--interleave epoch`` (the default on GPUs, where timing single steps would need a
  synchronisation that changes zoo's pipelining): a bare epoch after each zoo epoch, or before
  it in odd repeats, so neither always runs after the other.

The first epoch of every run is a warm-up and is left out. The figures are medians over the
other epochs of all repeats; the ratio is the median of the paired ratios (each zoo epoch over
the bare epoch run beside it).

    python benchmarks/overhead.py --arch simplecnn --image-size 32 --epochs 6 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import zoo
from zoo.data.batches import epoch_generator
from zoo.data.splits import channel_stats
from zoo.device.defaults import use_channels_last
from zoo.device.placement import resolve_device
from zoo.device.precision import resolve_precision
from zoo.errors import ZooError
from zoo.models.inference import Normalizer
from zoo.train.allocator import keep_freed_memory
from zoo.train.config import TrainConfig
from zoo.train.progress import RichReporter
from zoo.train.runtime import epoch_seed
from zoo.train.trainer import Trainer

LR = 1e-3


@dataclass
class BareLoop:
    """The minimal idiomatic PyTorch training loop on preloaded tensors, runnable a step at a
    time; ``seconds`` holds each epoch's time spent in its own code only."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    device: torch.device
    amp_dtype: torch.dtype
    seed: int
    seconds: list[float] = field(default_factory=list)
    perm: torch.Tensor | None = None
    rng: torch.Tensor | None = None  # this loop's CPU generator state, between steps
    done: int = 0
    elapsed: float = 0.0

    @property
    def steps(self) -> int:
        return self.x.shape[0] // self.batch_size

    def begin(self, own_rng: bool) -> None:
        """Start an epoch with zoo's order and seed for it. With ``own_rng`` the loop keeps its
        own generator state, so that steps interleaved with zoo's draw zoo's dropout masks."""
        epoch = len(self.seconds)
        seed = epoch_seed(self.seed, epoch, 0)
        if own_rng:
            self.rng = torch.Generator().manual_seed(seed).get_state()
        else:
            torch.manual_seed(seed)
        t0 = time.perf_counter()
        self.model.train()
        order = torch.randperm(self.x.shape[0], generator=epoch_generator(self.seed, epoch))
        self.perm = order.to(self.device)
        self.done, self.elapsed = 0, time.perf_counter() - t0

    def step(self) -> None:
        if self.perm is None or self.done == self.steps:
            return
        outer = None
        if self.rng is not None:
            outer = torch.get_rng_state()
            torch.set_rng_state(self.rng)
        t0 = time.perf_counter()
        idx = self.perm[self.done * self.batch_size : (self.done + 1) * self.batch_size]
        with torch.autocast(
            self.device.type, self.amp_dtype, enabled=self.amp_dtype != torch.float32
        ):
            loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.done += 1
        self.elapsed += time.perf_counter() - t0
        if outer is not None:
            self.rng = torch.get_rng_state()
            torch.set_rng_state(outer)

    def end(self) -> float:
        """Finish the epoch (any steps left, then the device); the seconds it took."""
        while self.done < self.steps:
            self.step()
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds.append(self.elapsed + time.perf_counter() - t0)
        self.perm = self.rng = None
        return self.seconds[-1]

    def epoch(self) -> None:
        self.begin(own_rng=False)
        self.end()


def bare_loop(args: argparse.Namespace, device: torch.device) -> BareLoop:
    """The bare loop's model, optimizer and data, set up as zoo sets up its own."""
    size = (args.image_size, args.image_size)
    data = zoo.build("dataset", "digits", image_size=size, seed=args.seed, val_fraction=0.2)
    mean, std = channel_stats(data.train.images)
    torch.manual_seed(args.seed)
    model = zoo.create_model(
        args.arch, num_classes=len(data.classes), in_chans=data.in_chans, image_size=size
    ).to(device)
    channels_last = use_channels_last(None, device, model)  # zoo's defaults, as zoo train's
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Preloaded once, normalized as zoo normalizes each batch: the same input values.
    x = Normalizer(mean, std, device, channels_last)(data.train.images.to(device))
    y = data.train.labels.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    amp_dtype = resolve_precision("auto", device, model)
    return BareLoop(model, optimizer, x, y, args.batch_size, device, amp_dtype, args.seed)


class Interleaved(RichReporter):
    """zoo's own progress display, running the bare loop beside zoo's steps or epochs."""

    def __init__(self, bare: BareLoop, mode: str, bare_first: bool) -> None:
        from rich.console import Console

        self.devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in finish()
        super().__init__(Console(file=self.devnull, force_terminal=True, width=120))
        self.bare, self.mode, self.bare_first = bare, mode, bare_first
        self.inside: list[float] = []  # bare seconds spent inside each zoo epoch
        self.begun = 0.0

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        if self.mode == "step":
            self.bare.begin(own_rng=True)  # before zoo's epoch clock starts
            self.begun = self.bare.elapsed
        elif self.bare_first:
            self.bare.epoch()
        super().epoch_start(epoch, epochs, steps)

    def step(self, images: int, live: Callable[[], dict[str, float]]) -> None:
        super().step(images, live)
        if self.mode == "step":
            self.bare.step()

    def epoch_end(self, record: dict[str, Any]) -> None:
        super().epoch_end(record)
        if self.mode == "step":
            self.inside.append(self.bare.elapsed - self.begun)
            self.bare.end()  # no steps are left when the two step counts agree
        elif not self.bare_first:
            self.bare.epoch()

    def finish(self, summary: dict[str, Any]) -> None:
        super().finish(summary)
        self.devnull.close()


def run_pair(
    args: argparse.Namespace, device: torch.device, out: Path, mode: str, bare_first: bool
) -> tuple[list[float], list[float], bool]:
    """One zoo run and one bare run, interleaved; their training seconds per epoch, and
    whether they ended with the same weights."""
    bare = bare_loop(args, device)
    cfg = TrainConfig(
        arch=args.arch,
        data="digits",
        image_size=str(args.image_size),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=LR,
        device=args.device,
        seed=args.seed,
        out=str(out),
        overwrite=True,
    )
    reporter = Interleaved(bare, mode, bare_first)
    trainer = Trainer(cfg, reporter)
    result = trainer.fit()
    zoo_seconds = [r["seconds"] for r in result.history]
    if mode == "step":
        zoo_seconds = [z - b for z, b in zip(zoo_seconds, reporter.inside, strict=True)]
    ours, theirs = trainer.net.state_dict(), bare.model.state_dict()
    same = ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    return [round(z, 4) for z in zoo_seconds], [round(b, 4) for b in bare.seconds], same


def warm(seconds: list[float]) -> list[float]:
    return seconds[1:] if len(seconds) > 1 else seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="simplecnn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    parser.add_argument(
        "--interleave",
        choices=("auto", "step", "epoch"),
        default="auto",
        help="pair steps (auto: on the CPU) or epochs (auto: on GPUs)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.image_size, args.epochs, args.batch_size, args.repeats) < 1:
        parser.error("--image-size, --epochs, --batch-size and --repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as zoo train does, for both loops alike
    load_before = os.getloadavg()[0]
    try:
        device = resolve_device(args.device)
        mode = args.interleave
        if mode == "auto":
            mode = "step" if device.type == "cpu" else "epoch"
        if mode == "step" and device.type != "cpu":
            raise ZooError("--interleave step times single steps, which needs --device cpu")
        zoo_runs, bare_runs, same = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeats):
                z, b, s = run_pair(args, device, Path(tmp) / f"run{r}", mode, r % 2 == 1)
                zoo_runs.append(z)
                bare_runs.append(b)
                same.append(s)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    zoo_warm = [s for run in zoo_runs for s in warm(run)]
    bare_warm = [s for run in bare_runs for s in warm(run)]
    paired = [z / b for z, b in zip(zoo_warm, bare_warm, strict=True)]
    report = {
        "arch": args.arch,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "interleave": mode,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "zoo_seconds_per_epoch": round(statistics.median(zoo_warm), 4),
        "bare_seconds_per_epoch": round(statistics.median(bare_warm), 4),
        "ratio": round(statistics.median(paired), 4),
        "ratio_of_medians": round(statistics.median(zoo_warm) / statistics.median(bare_warm), 4),
        "same_weights": same,
        "zoo_epochs": zoo_runs,
        "bare_epochs": bare_runs,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{args.arch} {args.image_size}px batch {args.batch_size} on {device} "
            f"({report['threads']} threads, load {load_before:.1f}-{os.getloadavg()[0]:.1f}): "
            f"zoo {report['zoo_seconds_per_epoch']:.3f} s/epoch, "
            f"bare {report['bare_seconds_per_epoch']:.3f} s/epoch, "
            f"ratio {report['ratio']:.3f}; same weights: {all(same)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
