"""Writing each epoch into the run directory: zoo's own callbacks, run after every other
callback so that the state they saved and the reason to stop they gave go with the epoch.

An epoch's files are written in two steps: every file is first written in full to a temporary
file beside its target (``stage``), and only when all of them are on disk are they renamed into
place (``commit``), ``checkpoints/last.safetensors`` last. A full disk or a state that cannot be
encoded therefore changes nothing: the files of the previous epoch stay, all of one epoch. A run
killed between the renames resumes from ``last`` (the previous epoch) and rewrites them all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.files import atomic
from zoo.models import hfconfig, weights
from zoo.train import rundir
from zoo.train.events import Attached, Callback, Run

Capture = Callable[[], tuple[dict[str, Any], dict[str, Any]]]


def own_callbacks(capture: Capture, keep: int) -> list[Attached]:
    """zoo's own writing of each epoch, in order: its weights and state, the metrics files.
    (The model card is written when the run ends, before the callbacks' ``on_fit_end``:
    ``write_card``.)"""
    return [
        Attached("", "", Checkpoint(capture, keep)),
        Attached("", "", MetricsFiles()),
    ]


class Checkpoint(Callback):
    """Weights (``model.safetensors``, ``model_ema.safetensors``, timm's ``config.json``),
    the training state into ``best`` when the monitored metric improved and into the kept
    epoch copies with ``--keep N``, and last into ``last``, which commits the epoch."""

    def __init__(self, capture: Capture, keep: int) -> None:
        self.capture = capture
        self.keep = keep

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> str | None:
        epochs_done = run.epoch
        staged: list[tuple[Path, Path]] = []
        try:
            self._stage(run, epochs_done, staged)
        except BaseException as exc:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            if not isinstance(exc, OSError):
                raise
            raise _unwritten(run.out, epochs_done, exc) from None
        done: list[Path] = []
        try:
            for tmp, path in staged:
                atomic.commit(tmp, path)
                done.append(path)
        except OSError as exc:
            for tmp, _ in staged[len(done) :]:
                tmp.unlink(missing_ok=True)
            if not done:
                raise _unwritten(run.out, epochs_done, exc) from None
            left = [path for _, path in staged[len(done) :]]
            start = f"after epoch {epochs_done - 1}" if epochs_done > 1 else "from the start"
            raise ZooError(
                f"cannot write epoch {epochs_done} to {run.out}: {os_reason(exc)}; "
                f"{_names(run.out, done)} hold epoch {epochs_done}, but "
                f"{_names(run.out, left)} do not (they hold the previous epoch's, or nothing); "
                f"`zoo train --resume {run.out}` continues {start} and rewrites them all",
                exit_code=1,
            ) from None
        if self.keep:
            for old in rundir.epoch_checkpoints(run.out)[: -self.keep]:
                old.unlink(missing_ok=True)
        return None

    def _stage(self, run: Run, epochs_done: int, staged: list[tuple[Path, Path]]) -> None:
        """Write every file of the epoch to its temporary name, in commit order; one at a
        time, so that no more than one file's bytes are held in memory."""
        out, info = run.out, run.info
        info.epoch = epochs_done

        def add(path: Path, data: bytes) -> None:
            staged.append((atomic.stage(path, data), path))

        add(out / "model.safetensors", weights.encode(run.net.state_dict(), info))
        if run.ema_net is not None:
            add(out / "model_ema.safetensors", weights.encode(run.ema_net.state_dict(), info))
        add(out / hfconfig.CONFIG, hfconfig.encode(info, run.net))  # also a timm/HF folder
        tensors, state = self.capture()
        blob = weights.encode(tensors, info, state)
        last = atomic.stage(out / rundir.LAST, blob)
        copies = []
        if run.best.epoch == epochs_done:
            copies.append(out / rundir.BEST)
        if self.keep:
            copies.append(out / f"checkpoints/epoch-{epochs_done:04d}.safetensors")
        try:
            for path in copies:  # the same bytes: hard links to last's
                staged.append((atomic.stage_copy(last, path, blob), path))
        except BaseException:
            last.unlink(missing_ok=True)
            raise
        staged.append((last, out / rundir.LAST))


def _unwritten(out: Path, epochs_done: int, exc: OSError) -> ZooError:
    """Epoch ``epochs_done`` could not be written and nothing of it is in place: the run
    directory holds the previous epoch's files, all of them."""
    if epochs_done > 1:
        kept = (
            f"epoch {epochs_done - 1} is complete there (resume with `zoo train --resume "
            f"{out}` once there is room)"
        )
    else:
        kept = f"no epoch was saved (--out {out} can be used again once there is room)"
    return ZooError(
        f"cannot write epoch {epochs_done} to {out}: {os_reason(exc)}; nothing of it was "
        f"written, {kept}",
        exit_code=1,
    )


def _names(out: Path, paths: list[Path]) -> str:
    return ", ".join(str(p.relative_to(out)) for p in paths) or "no file"


def write_card(run: Run) -> None:
    """``README.md``, the run's model card in the Hub's format (``zoo.models.card``), written
    when the run is complete, with ``summary.json``, before any callback's ``on_fit_end`` (a
    tracker logs it as an artifact there); ``zoo eval`` and ``zoo push`` refresh it."""
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
