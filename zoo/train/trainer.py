"""The training loop: epochs of optimizer steps and validation, and the events around them.

What a run builds comes from ``zoo.train.parts``; what it saves, and when, from the callbacks
(``zoo.train.checkpointing``, ``zoo.builtins.callbacks`` and plugins'). Guarantees: every
epoch's full state is saved atomically; randomness is a function of ``(seed, epoch, rank)``, so
a killed and resumed run ends with the weights of an uninterrupted one; metrics stay on the
device until the display or the epoch's end reads them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo import __version__
from zoo.data.augment import compose
from zoo.data.batches import make_batches
from zoo.data.splits import default_workers
from zoo.device.placement import resolve_device
from zoo.device.precision import autocast, resolve_precision
from zoo.errors import ZooError
from zoo.labeling.eval_loop import evaluate
from zoo.labeling.metrics import Accumulator, mode_for
from zoo.models.inference import Normalizer
from zoo.models.weights import ModelInfo
from zoo.train import rundir, state, summary
from zoo.train.checkpointing import os_reason, own_callbacks, write_card
from zoo.train.config import TrainConfig, normalize, validate
from zoo.train.events import Attached, Best, Callback, CallbackError, Events, Run
from zoo.train.freezing import Freezer
from zoo.train.parts import (
    build_callbacks,
    build_data,
    build_loss,
    build_network,
    build_optimizer,
    check_processes,
    init_weights,
    monitored,
    normalization,
    resolve_components,
    settle,
    settle_task,
)
from zoo.train.progress import Reporter
from zoo.train.ranks import Secondary, broadcast_buffers, broadcast_text, together
from zoo.train.runtime import (
    Dist,
    current_rss_mb,
    epoch_seed,
    init_distributed,
    leave_distributed,
    seed_everything,
    set_threads,
)
from zoo.train.signals import signals_deferred, sigterm_as_interrupt


class Interrupted(ZooError):
    """Ctrl-C or SIGTERM: the last completed epoch is on disk."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=130)


@dataclass
class RunResult:
    out: Path
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    stopped: str | None = None


class Trainer:
    """One training run. ``fit()`` does the work; build it with a TrainConfig."""

    def __init__(
        self,
        cfg: TrainConfig,
        reporter: Reporter | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        """``callbacks`` are objects of your own, raised after those the config names."""
        validate(cfg)
        self.cfg = normalize(cfg)
        self.reporter = reporter or Reporter()
        self.extra_callbacks = list(callbacks)
        self.history: list[dict[str, Any]] = []
        self.events = Events([])

    def fit(self) -> RunResult:
        started = time.perf_counter()
        try:
            self.setup()
            return self._run(started)
        finally:
            if "lock" in self.__dict__:
                self.lock.release()
            if "model" in self.__dict__:
                self.model = self.eval_model  # drops the DDP wrapper, which holds the group
            leave_distributed(self.__dict__.get("dist"))

    # --- set-up ----------------------------------------------------------------------------

    def setup(self, *, claim: bool = True) -> None:
        """Build everything the run needs (``fit`` calls it). With ``claim=False`` the run
        directory is neither locked nor checked: for callers that write nothing there
        (``zoo lr-find``)."""
        cfg = self.cfg
        self.dist: Dist = init_distributed(cfg.device)
        if not self.dist.main:
            self.reporter = Reporter()  # rank 0 alone reports
        # Ranks do different work in these blocks (rank 0 checks the output directory, one
        # process per machine prepares the data first), so a failure must stop them all.
        with together(self.dist):
            set_threads(cfg.threads)
            self.device = resolve_device(cfg.device, self.dist)
            self.amp_dtype = resolve_precision(cfg.precision, self.device)
            check_processes(cfg, self.dist.world, self.device)
            self.parts = resolve_components(cfg)
            self.cfg, self.size_note = settle(cfg, self.parts)  # as the run records it
            cfg = self.cfg
            out = cfg.out
            if out is None and self.dist.main:
                out = str(rundir.default_out(self.parts.arch.spec.name))
            if self.dist.main and claim:  # rank 0 alone writes the run directory: locked first
                resume, overwrite = bool(cfg.resume), cfg.overwrite
                self.lock = rundir.claim(Path(str(out)), resume=resume, overwrite=overwrite)
            seed_everything(cfg.seed)
            if self.dist.local_rank == 0:  # decodes, caches or downloads once per machine
                self.init = init_weights(cfg, self.parts.arch)
                self.data = build_data(self.parts.dataset, cfg, self.parts.val_data)
        # Rank 0 alone writes, but messages on every rank name its (timestamped) directory.
        self.out = Path(out if cfg.out else broadcast_text(self.dist, out))
        with together(self.dist):
            if self.dist.local_rank != 0:
                self.init = init_weights(cfg, self.parts.arch)
                self.data = build_data(self.parts.dataset, cfg, self.parts.val_data)
            self.cfg, self.task = settle_task(self.cfg, self.parts, self.data)
            if self.dist.main:
                self.task.check(self.data, self.reporter.note)
            self._build()
        self._wrap()

    def _build(self) -> None:
        """Network, batches, loss, optimizer, schedule, EMA, callbacks; then the saved state
        when resuming."""
        cfg, data = self.cfg, self.data
        self.num_classes = len(data.classes)
        last = Path(cfg.resume) / rundir.LAST if cfg.resume else None
        resuming = last is not None and last.is_file()
        self.mean, self.std = normalization(
            self.init, data, last if resuming else None, self.reporter.note
        )
        # Resuming: the memory format and precision the run trained in (what "auto" chose).
        chosen = state.kept_runtime(cfg, last, self.device) if last and resuming else cfg
        self.net, self.channels_last = build_network(
            self.parts.arch,
            chosen,
            data,
            self.device,
            self.dist,
            self.reporter.note,
            init=None if resuming else self.init,
        )
        self.freezer = Freezer(self.net, cfg.freeze_epochs, self.parts.arch.label)
        self.amp_dtype = resolve_precision(chosen.precision, self.device, self.net)
        self.params = sum(p.numel() for p in self.net.parameters())
        self.info = ModelInfo(
            arch=self.parts.arch.component.qualified,
            arch_params=self.parts.arch.spec.params,
            num_classes=self.num_classes,
            in_chans=data.in_chans,
            image_size=tuple(data.image_size),
            classes=list(data.classes),
            mean=self.mean,
            std=self.std,
            zoo_version=__version__,
            config=cfg.to_dict(saved_only=True),
            thresholds=self.task.thresholds(None, cfg.threshold, self.num_classes),
        )
        batches = functools.partial(
            make_batches,
            batch_size=cfg.batch_size,
            device=self.device,
            workers=default_workers() if cfg.workers is None else cfg.workers,
            seed=cfg.seed,
            rank=self.dist.rank,
            world=self.dist.world,
        )
        self.train_batches = batches(data.train, train=True, balanced=cfg.balanced)
        self.val_batches = (
            None if data.val is None or len(data.val) == 0 else batches(data.val, train=False)
        )
        self.normalize = Normalizer(self.mean, self.std, self.device, self.channels_last)
        self.augs = compose([a.build(num_classes=self.num_classes) for a in self.parts.augs])
        assert self.parts.loss is not None  # settle_task resolved the task's default
        self.loss_fn = build_loss(
            self.parts.loss, cfg.class_weights, data.train, self.num_classes, self.device, self.task
        )
        self.optimizer = build_optimizer(self.parts.optimizer, self.net, cfg, self.parts.arch)
        self.updates_per_epoch = math.ceil(len(self.train_batches) / cfg.accum_steps)
        monitor = monitored(cfg, self.val_batches is not None, self.reporter.note, self.task)
        self.best = Best(monitor, mode_for(monitor))
        self.scheduler = self.parts.scheduler.build(
            optimizer=self.optimizer,
            epochs=cfg.epochs,
            steps_per_epoch=self.updates_per_epoch,
            monitor_mode=self.best.mode,
        )
        self.plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        )
        from zoo.train.ema import EMA

        self.ema = EMA(self.net, cfg.ema_decay) if cfg.ema else None
        if self.dist.main:  # events run on rank 0 alone; zoo's own writing comes last
            own = own_callbacks(functools.partial(state.capture, self), cfg.keep)
            given = [
                Attached(f"{type(c).__qualname__}#{i}", f"callback {type(c).__qualname__}", c)
                for i, c in enumerate(self.extra_callbacks, start=1)
            ]
            self.events = Events(build_callbacks(self.parts.callbacks) + given + own)
        self.start_epoch = 0
        if resuming:
            state.restore(self, last)  # type: ignore[arg-type]
            self.start_epoch = len(self.history)
        elif cfg.resume:
            self.reporter.note("no epoch of this run had completed: starting from the first")

    def _wrap(self) -> None:
        """DDP (a collective: rank 0's weights go to every rank), compile; again on (un)freezing."""
        model: nn.Module = self.net
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(self.net, device_ids=ids)
        self.eval_model: Any = torch.compile(self.net) if self.cfg.compile else self.net
        self.model: Any = torch.compile(model) if self.cfg.compile else model

    # --- the loop --------------------------------------------------------------------------

    def _run(self, started: float) -> RunResult:
        main, run = self.dist.main, Run(self)
        with together(self.dist):
            if main:
                try:
                    rundir.prepare(
                        self.out,
                        self.cfg.to_dict(saved_only=True),
                        __version__,
                        resume=self.cfg.resume is not None,
                        overwrite=self.cfg.overwrite,
                    )
                except OSError as exc:
                    reason = os_reason(exc)
                    raise ZooError(f"cannot write the run directory {self.out}: {reason}") from None
        self.reporter.start(summary.header(self))
        freeze, epochs = self.cfg.freeze_epochs, self.cfg.epochs
        if 0 < epochs <= freeze:
            self.reporter.note(
                f"warning: --freeze-epochs {freeze} covers all {epochs} epochs: only the "
                "classifier trains, the backbone never does"
            )
        try:
            with together(self.dist), signals_deferred():
                if main:
                    self.events.fit_start(run)
            stopped = self._epochs(run)
            result = summary.summary(self, started, stopped)
            with together(self.dist), signals_deferred():
                if main:
                    rundir.write_summary(self.out, result)
                    write_card(run)  # before the callbacks' on_fit_end: theirs to log
                    self.events.fit_end(run, result)
        except BaseException as exc:
            if main:
                rundir.record_failure(self.out, exc)
            with contextlib.suppress(ZooError):  # the first failure is the one to report
                self.events.close()
            raise
        self.events.close()
        self.reporter.finish(result)
        return RunResult(self.out, self.history, result, stopped)

    def _epochs(self, run: Run) -> str | None:
        """Train the remaining epochs; the reason a callback gave to stop early, if any."""
        main = self.dist.main
        try:
            with sigterm_as_interrupt():
                for epoch in range(self.start_epoch, self.cfg.epochs):
                    record = self._epoch(epoch)
                    value = record[self.best.metric]
                    self.best.update(value, epoch + 1)
                    if self.plateau:
                        self.scheduler.step(value)
                    self.history.append(record)
                    self.reporter.epoch_end(record)
                    stop = None
                    with together(self.dist), signals_deferred():
                        if main:
                            stop = self._epoch_events(run, record)
                    stop = broadcast_text(self.dist, stop) or None
                    if stop:
                        return stop
        except KeyboardInterrupt:
            if not main:
                raise Secondary("interrupted", exit_code=130) from None
            raise Interrupted(summary.interrupted(self)) from None
        except _NonFinite:
            # Every rank sees the all-reduced flag; rank 0 alone says so.
            if not main:
                raise Secondary("non-finite loss", exit_code=1) from None
            raise ZooError(summary.non_finite(self), exit_code=1) from None
        return None

    def _epoch_events(self, run: Run, record: dict[str, Any]) -> str | None:
        """The epoch's events (callbacks, then zoo's writing of the epoch); a callback's
        failure stops the run before the epoch is saved, so it sees the epoch again on resume."""
        try:
            return self.events.epoch_end(run, record)
        except CallbackError as exc:
            saved = len(self.history) - 1
            kept = (
                f"epoch {saved} is the last saved (continue with `zoo train --resume {self.out}`)"
                if saved
                else "no epoch was saved"
            )
            raise CallbackError(f"{exc}; {kept}", exit_code=exc.exit_code) from exc

    def _epoch(self, epoch: int) -> dict[str, Any]:
        steps = len(self.train_batches)
        self.reporter.epoch_start(epoch, self.cfg.epochs, steps)
        # The run's first epoch also counts the files decoded at set-up (for the statistics).
        decoded_before = 0 if epoch == self.start_epoch else summary.decoded(self.train_batches)
        t0 = time.perf_counter()
        record: dict[str, Any] = {"epoch": epoch + 1}
        record.update(self._train_epoch(epoch))
        broadcast_buffers(self.dist, self.net, *([self.ema.module] if self.ema else []))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        seen = len(self.data.train)
        if self.train_batches.drop_last:
            seen = min(seen, steps * self.cfg.batch_size)
        if self.val_batches is not None:
            record.update(self.evaluate(self.eval_model))
            if self.ema is not None:
                record.update(self.evaluate(self.ema.module, prefix="ema_val_"))
        record["lr"] = max(g["lr"] for g in self.optimizer.param_groups)  # the top layer's
        record["seconds"] = round(seconds, 4)
        record["images_per_second"] = round(seen / seconds, 1) if seconds else 0.0
        record["rss_mb"] = current_rss_mb()
        decoded_after = summary.decoded(self.train_batches)
        if decoded_after is not None:
            record["decoded_images"] = decoded_after - (decoded_before or 0)
        return record

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        if self.freezer.apply(epoch):  # DDP syncs, and compile traces, what trains now
            self._wrap()
        seed_everything(epoch_seed(cfg.seed, epoch, self.dist.rank))
        meter = Accumulator(self.device, self.task.correct)
        steps = len(self.train_batches)
        accum = cfg.accum_steps
        amp = autocast(self.device, self.amp_dtype)
        world = self.dist.world
        pending = False  # gradients accumulated but not yet applied
        for step, (x, y) in enumerate(self.train_batches.epoch(epoch)):
            y = self.task.encode(y, self.num_classes)
            if self.augs:  # augmentations take float images in [0, 1]
                x = x.float().div_(255)
                for aug in self.augs:
                    x, y = aug(x, y)
            x = self.normalize(x)  # uint8 without augmentations: converted in the same op
            update = (step + 1) % accum == 0 or step + 1 == steps
            sync = (
                contextlib.nullcontext()
                if update or not self.dist.enabled
                else self.model.no_sync()
            )
            with sync:
                with amp:
                    logits = self.model(x)
                    loss = self.loss_fn(logits, y)
                # Mean over the micro-batches of this update (the last group may be short).
                group = min(accum, steps - step // accum * accum)
                scaled = loss / group if group > 1 else loss
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            pending = not update
            if update:
                self._optimizer_step()
            meter.update(loss, logits, y)
            self.reporter.step(x.shape[0] * world, meter.read)
        if pending:  # a dataset dropped whole batches (all unreadable): apply what was gathered
            self._optimizer_step()
        if self.dist.enabled:
            torch.distributed.all_reduce(meter.values)
        values = meter.read()
        if values["nonfinite"]:
            raise _NonFinite()
        return {"train_loss": values["loss"], "train_accuracy": values["accuracy"]}

    def _optimizer_step(self) -> None:
        if self.cfg.clip_grad is not None:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.clip_grad)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not self.plateau:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.net)

    def evaluate(self, model: Any, prefix: str = "val_") -> dict[str, float]:
        """The task's validation metrics (single-label: loss, accuracy, macro
        precision/recall/F1)."""
        assert self.val_batches is not None
        result = evaluate(
            model,
            self.val_batches,
            self.normalize,
            self.num_classes,
            self.device,
            self.amp_dtype,
            self.loss_fn,
            self.dist,
            task=self.task,
        )
        thresholds = self.task.thresholds(result, self.cfg.threshold, self.num_classes)
        if prefix == "val_":  # what the weights written after this epoch answer with
            self.info.thresholds = thresholds
        values = self.task.epoch_metrics(result, thresholds)
        return {f"{prefix}{m}": values[m] for m in self.task.val_metrics}


class _NonFinite(Exception):
    pass
