"""What a run says about itself: the header printed at its start and ``summary.json`` at its
end (throughput over every epoch, resumed ones included, peak memory, unreadable images)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from zoo.train.ranks import max_over_ranks
from zoo.train.runtime import peak_memory_mb

if TYPE_CHECKING:
    from zoo.data.splits import DataSplits
    from zoo.train.trainer import Trainer


def header(trainer: Trainer) -> dict[str, str]:
    """Architecture, size, data, device, precision and run directory, for the first line."""
    data, dist = trainer.data, trainer.dist
    fields = {
        "arch": trainer.parts.arch.component.qualified,
        "params": f"{trainer.params:,}",
        "data": f"{len(data.train)} train / "
        f"{len(data.val) if data.val is not None else 0} val, "
        f"{trainer.num_classes} classes, {data.in_chans}x"
        f"{data.image_size[0]}x{data.image_size[1]}",
        "device": f"{trainer.device}" + (f" x{dist.world}" if dist.enabled else ""),
        "precision": str(trainer.amp_dtype).removeprefix("torch."),
        "out": str(trainer.out),
    }
    if trainer.size_note:
        fields["image size"] = trainer.size_note
    if trainer.cfg.resume:
        fields["resumed at epoch"] = str(trainer.start_epoch)
    return fields


def interrupted(trainer: Trainer) -> str:
    """What Ctrl-C or SIGTERM leaves on disk, and how to continue."""
    done = len(trainer.history)
    if not done:
        return (
            "interrupted before the first epoch completed: no weights were saved; start "
            f"it again with `zoo train --resume {trainer.out}`"
        )
    return (
        f"interrupted in epoch {done + 1}: the weights of epoch {done} are in "
        f"{trainer.out / 'model.safetensors'}; continue with "
        f"`zoo train --resume {trainer.out}`"
    )


def non_finite(trainer: Trainer) -> str:
    """A NaN or infinite loss: what is kept. A run that saved nothing leaves a directory that
    a new run may use again (it holds only its config.toml, which is not a previous run)."""
    done = len(trainer.history)
    kept = (
        f"the last good weights (epoch {done}) are in {trainer.out}"
        if done
        else f"no epoch completed, so nothing was saved (--out {trainer.out} can be used again)"
    )
    return (
        f"the loss became NaN or infinite in epoch {done + 1}; stopped: {kept}. "
        "Try a lower --lr or --clip-grad."
    )


def summary(trainer: Trainer, started: float, stopped: str | None) -> dict[str, Any]:
    """``summary.json``: a collective under torchrun (peak memory of the busiest process)."""
    best = trainer.best
    return {
        "epochs_completed": len(trainer.history),
        "stopped": stopped,
        "stopped_by": trainer.events.stopped_by if stopped else None,
        "best": {"metric": best.metric, "value": best.value, "epoch": best.epoch},
        "wall_seconds": round(time.perf_counter() - started, 3),
        **throughput(trainer.history),
        "memory": max_over_ranks(
            trainer.dist, peak_memory_mb(trainer.device, workers=_has_workers(trainer))
        ),
        "skipped_images": skipped(trainer.data),
        "weights": str(trainer.out / "model.safetensors"),
        "device": str(trainer.device),
        "world_size": trainer.dist.world,
    }


def _has_workers(trainer: Trainer) -> bool:
    loaders = [getattr(b, "loader", None) for b in (trainer.train_batches, trainer.val_batches)]
    return any(getattr(loader, "num_workers", 0) > 0 for loader in loaders)


def throughput(history: list[dict[str, Any]]) -> dict[str, float]:
    """Training time and images/s over every epoch of the run, resumed ones included."""
    seconds = sum(r["seconds"] for r in history)
    images = sum(r["seconds"] * r["images_per_second"] for r in history)
    return {
        "train_seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 1) if seconds else 0.0,
    }


def skipped(data: DataSplits) -> int:
    """Unreadable images: found at load time, or met while streaming (datasets that can say)."""
    from zoo.data.splits import split_unreadable

    streamed = [split_unreadable(s) for s in (data.train, data.val) if s is not None]
    return len(data.skipped) + sum(len(found) for found in streamed)


def decoded(batches: Any) -> int | None:
    """Files a batch source's dataset decoded so far (None if it does not count them)."""
    counter = getattr(batches, "decoded", None)
    return counter() if callable(counter) else None
