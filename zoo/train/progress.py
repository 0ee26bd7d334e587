"""How a training run reports: a silent base class and a rich progress display.

The trainer calls ``step`` every batch with a callable for the live metrics; reading them
synchronises with the GPU, so the display does it only at its refresh rate. The bar is redrawn
from ``step`` rather than by rich's refresh thread: that thread wakes 10 times a second and, on a
small CPU, takes time from the training threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Reporter:
    """Receives a run's events and shows nothing (for benchmarks and library use)."""

    def start(self, header: dict[str, Any]) -> None:
        pass

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, images: int, live: Callable[[], dict[str, float]]) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def finish(self, summary: dict[str, Any]) -> None:
        pass


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


EPOCH_FIELDS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_f1",
    "val_map",
    "val_f1_micro",
    "ema_val_accuracy",
    "ema_val_map",
)


class RichReporter(Reporter):
    """A progress bar (loss, accuracy, images/s, ETA) on terminals, one line per epoch."""

    def __init__(self, console: Any, refresh_seconds: float = 0.5) -> None:
        self.console = console
        self.refresh_seconds = refresh_seconds
        self.progress: Any = None
        self.task: Any = None

    def start(self, header: dict[str, Any]) -> None:
        parts = [f"[bold]{k}[/] {v}" for k, v in header.items()]
        self.console.print("  ".join(parts), highlight=False)

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch, self.epochs = epoch, epochs
        self.images, self.started, self.next_refresh = 0, time.perf_counter(), 0.0
        if not self.console.is_terminal:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[live]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,
        )
        self.task = self.progress.add_task("train", total=steps, live="")
        self.progress.start()

    def step(self, images: int, live: Callable[[], dict[str, float]]) -> None:
        self.images += images
        if self.progress is None:
            return
        now = time.perf_counter()
        if now >= self.next_refresh:
            self.next_refresh = now + self.refresh_seconds
            values = live()
            rate = self.images / max(now - self.started, 1e-9)
            text = f"loss {values['loss']:.4f}  acc {values['accuracy']:.4f}  {rate:,.0f} img/s"
            self.progress.update(self.task, advance=1, live=text, refresh=True)
        else:
            self.progress.advance(self.task)

    def _stop_bar(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def epoch_end(self, record: dict[str, Any]) -> None:
        self._stop_bar()
        fields = "  ".join(f"{k} {_fmt(record[k])}" for k in EPOCH_FIELDS if k in record)
        self.console.print(
            f"epoch {record['epoch']}/{self.epochs}  {fields}  "
            f"{record['images_per_second']:,.0f} img/s  {record['seconds']:.1f}s"
            + (f"  decoded {record['decoded_images']}" if "decoded_images" in record else ""),
            highlight=False,
        )

    def note(self, text: str) -> None:
        self._stop_bar()
        self.console.print(text, highlight=False)

    def finish(self, summary: dict[str, Any]) -> None:
        from rich.markup import escape

        self._stop_bar()
        if summary.get("stopped"):  # a callback's reason, and which callback gave it
            by = f" ({summary['stopped_by']})" if summary.get("stopped_by") else ""
            self.console.print(
                f"stopped after epoch {summary['epochs_completed']}: "
                f"{escape(str(summary['stopped']))}{escape(by)}",
                highlight=False,
            )
        best = summary.get("best") or {}
        parts = [
            f"[bold]done[/] {summary['epochs_completed']} "
            f"{'epoch' if summary['epochs_completed'] == 1 else 'epochs'} in "
            f"{summary['wall_seconds']:.1f}s",
            f"{summary['images_per_second']:,.0f} img/s",
        ]
        if best.get("epoch"):
            parts.append(f"best {best['metric']} {best['value']:.4f} (epoch {best['epoch']})")
        memory = summary.get("memory", {})
        parts.append(
            f"peak memory {memory.get('peak_rss_mb', 0):,.0f} MB"
            + (
                f" (loader workers {memory['workers_peak_rss_mb']:,.0f} MB)"
                if memory.get("workers_peak_rss_mb")
                else ""
            )
            + (f", GPU {memory['peak_gpu_mb']:,.0f} MB" if "peak_gpu_mb" in memory else "")
        )
        if summary.get("skipped_images"):
            parts.append(f"[yellow]{summary['skipped_images']} unreadable images skipped[/]")
        self.console.print("  ".join(parts), highlight=False)
        self.console.print(f"weights: {summary['weights']}", highlight=False)
