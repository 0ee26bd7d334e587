"""Built-in training callbacks: early stopping and TensorBoard logging (``--patience`` and
``--tensorboard`` are shortcuts for them)."""

from __future__ import annotations

from typing import Any

from zoo.errors import ZooError
from zoo.plugins.hookspecs import Register, hookimpl
from zoo.train.events import Callback, Run


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for ``patience`` epochs."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        best = run.best
        if best.bad_epochs < self.patience:
            return None
        run.note(
            f"early stopping: {best.metric} has not improved for {self.patience} epochs "
            f"(best {best.value:.4f} at epoch {best.epoch})"
        )
        return "early_stopping"


class TensorBoard(Callback):
    """Every epoch's numbers as TensorBoard scalars in ``RUN/tensorboard``."""

    def __init__(self, writer_class: Any) -> None:
        self.writer_class = writer_class
        self.writer: Any = None

    def on_fit_start(self, run: Run) -> None:
        self.writer = self.writer_class(str(run.out / "tensorboard"))

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()
        return None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def early_stopping(patience: int = 5) -> Any:
    """Stop when --monitor has not improved for patience epochs (what --patience sets)."""
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    return EarlyStopping(patience)


def tensorboard() -> Any:
    """Log every epoch's metrics, learning rate and throughput to RUN/tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ZooError(
            "--tensorboard needs the tensorboard package: pip install 'zoo[tensorboard]'"
        ) from None
    return TensorBoard(SummaryWriter)


@hookimpl
def zoo_register_callbacks(register: Register) -> None:
    register("early_stopping", early_stopping)
    register("tensorboard", tensorboard)
