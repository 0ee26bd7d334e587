"""Writing each epoch into the run directory: zoo's own callbacks, run after every other
callback so that the state they saved and the reason to stop they gave go with the epoch.

Every file is written atomically, and ``checkpoints/last.safetensors`` is written after
everything else of its epoch: a run killed in between resumes from the previous epoch and
rewrites them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoo.errors import ZooError
from zoo.models import hfconfig, weights
from zoo.train import rundir
from zoo.train.events import Attached, Callback, Run

Capture = Callable[[], tuple[dict[str, Any], dict[str, Any]]]


def own_callbacks(capture: Capture, keep: int) -> list[Attached]:
    """zoo's own writing, in order: the epoch's weights and state, the metrics files, and the
    model card when the run ends."""
    return [
        Attached("", "", Checkpoint(capture, keep)),
        Attached("", "", MetricsFiles()),
        Attached("", "", ModelCardFile()),
    ]


class Checkpoint(Callback):
    """Weights (``model.safetensors``, ``model_ema.safetensors``, timm's ``config.json``),
    then the training state into ``best`` when the monitored metric improved, into the kept
    epoch copies with ``--keep N``, and last into ``last``, which commits the epoch."""

    def __init__(self, capture: Capture, keep: int) -> None:
        self.capture = capture
        self.keep = keep

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        epochs_done = run.epoch
        try:
            self._write(run, epochs_done)
        except OSError as exc:
            kept = (
                f"epoch {epochs_done - 1} is complete there (resume with `zoo train --resume "
                f"{run.out}` once there is room)"
                if epochs_done > 1
                else "no epoch was saved"
            )
            raise ZooError(
                f"cannot write epoch {epochs_done} to {run.out}: {os_reason(exc)}; {kept}",
                exit_code=1,
            ) from None
        return None

    def _write(self, run: Run, epochs_done: int) -> None:
        out, info = run.out, run.info
        info.epoch = epochs_done
        weights.save(out / "model.safetensors", run.net.state_dict(), info)
        hfconfig.write(out, info, run.net)  # the run is also a timm/HF folder
        if run.ema_net is not None:
            weights.save(out / "model_ema.safetensors", run.ema_net.state_dict(), info)
        tensors, state = self.capture()
        blob = weights.encode(tensors, info, state)
        if run.best.epoch == epochs_done:
            weights.atomic_write(out / rundir.BEST, blob)
        if self.keep:
            weights.atomic_write(out / f"checkpoints/epoch-{epochs_done:04d}.safetensors", blob)
        weights.atomic_write(out / rundir.LAST, blob)
        if self.keep:
            for old in rundir.epoch_checkpoints(out)[: -self.keep]:
                old.unlink(missing_ok=True)


class ModelCardFile(Callback):
    """``README.md``, the run's model card in the Hub's format (``zoo.models.card``), written
    when the run ends (``zoo eval`` and ``zoo push`` refresh it)."""

    def on_fit_end(self, run: Run, summary: dict[str, Any]) -> None:
        from zoo.models import card

        try:
            written = card.write(run.out)
        except OSError as exc:
            raise ZooError(
                f"cannot write the model card {run.out / card.FILE}: {os_reason(exc)}; the "
                "run itself is saved (`zoo eval` writes the card again)",
                exit_code=1,
            ) from None
        if written is None:
            run.note(f"{run.out / card.FILE} was not written by zoo: left as it is")


class MetricsFiles(Callback):
    """``metrics.jsonl`` and ``metrics.csv``, rewritten whole from the history every epoch (so
    a resumed run's files hold exactly its saved epochs)."""

    def on_fit_start(self, run: Run) -> None:
        if run.epoch:
            self._write(run)

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        self._write(run)
        return None

    def _write(self, run: Run) -> None:
        try:
            rundir.write_metrics(run.out, run.history)
        except OSError as exc:
            raise ZooError(
                f"cannot write the metrics files of {run.out}: {os_reason(exc)}; epoch "
                f"{run.epoch} is saved in its checkpoints (metrics.jsonl is rewritten from "
                "them when the run resumes)",
                exit_code=1,
            ) from None


def os_reason(exc: OSError) -> str:
    """An OS error in a few words, with the file it concerns."""
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
