"""The training engine: assembles components from a TrainConfig and runs epochs.

Guarantees: every epoch's full state is saved atomically; randomness is a function of
``(seed, epoch, rank)``, so a killed and resumed run ends with the weights of an uninterrupted
one; metrics stay on the device until the display or the epoch's end reads them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo import __version__
from zoo.data.augment import compose
from zoo.data.batches import make_batches
from zoo.data.splits import DataSplits, ImageTensors, channel_stats, default_workers
from zoo.errors import ZooError, did_you_mean
from zoo.models import hfconfig
from zoo.models import weights as checkpoint
from zoo.models.inference import Normalizer
from zoo.models.weights import ModelInfo, flatten_state, unflatten_state
from zoo.plugins.components import Resolved, resolve
from zoo.train import rundir
from zoo.train.config import TrainConfig, parse_image_size, validate
from zoo.train.eval_loop import evaluate
from zoo.train.metrics import Accumulator, from_confusion, mode_for
from zoo.train.progress import Reporter
from zoo.train.ranks import Secondary, broadcast_buffers, broadcast_text, max_over_ranks, together
from zoo.train.runtime import (
    Dist,
    autocast,
    current_rss_mb,
    epoch_seed,
    init_distributed,
    peak_memory_mb,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from zoo.train.signals import signals_deferred, sigterm_as_interrupt

# Settings a resumed run must share with the original (the others may change on resume).
IDENTITY = (
    "arch",
    "data",
    "aug",
    "loss",
    "optimizer",
    "scheduler",
    "init",
    "batch_size",
    "lr",
    "weight_decay",
    "image_size",
    "val_split",
    "accum_steps",
    "clip_grad",
    "ema",
    "ema_decay",
    "class_weights",
    "balanced",
    "seed",
    "monitor",
)


# The validation metrics, each recorded as val_NAME (and ema_val_NAME with --ema).
VAL_METRICS = ("loss", "accuracy", "precision", "recall", "f1")


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


@dataclass
class _Best:
    metric: str
    mode: str
    value: float | None = None
    epoch: int | None = None
    bad_epochs: int = 0

    def improved(self, value: float) -> bool:
        if self.value is None or math.isnan(self.value):
            return True
        return value > self.value if self.mode == "max" else value < self.value


@dataclass
class _Components:
    arch: Resolved
    dataset: Resolved
    augs: list[Resolved]
    loss: Resolved
    optimizer: Resolved
    scheduler: Resolved
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_components(cfg: TrainConfig) -> _Components:
    """Resolve every component named in the config; fails fast, before any data is read."""
    return _Components(
        arch=resolve("architecture", cfg.arch),
        dataset=resolve("dataset", data_spec(cfg.data)),  # idempotent
        augs=[resolve("augmentation", a) for a in cfg.aug],
        loss=resolve("loss", cfg.loss),
        optimizer=resolve("optimizer", cfg.optimizer),
        scheduler=resolve("scheduler", cfg.scheduler),
    )


def data_spec(text: str) -> str:
    """``--data`` as a dataset spec: a dataset's name (``mnist:root=/data``), or a path, which
    the ``folder`` dataset reads. Paths, and a dataset's ``root`` parameter, become absolute so
    that the saved config evaluates and resumes from any working directory."""
    from zoo.plugins.build import get_registry
    from zoo.plugins.specs import format_spec, parse_spec

    try:
        spec = parse_spec(text, kind="dataset")
    except ZooError:
        spec = None  # not a spec at all, so a path
    if spec is not None:
        names = {n for c in get_registry().components("dataset") for n in (c.name, *c.aliases)}
        if spec.name in names:
            root = spec.params.get("root")
            if not isinstance(root, str):
                return text
            return format_spec(spec.ref, {**spec.params, "root": _absolute(root)})
    if Path(text).expanduser().exists() or any(ch in text for ch in "/\\~") or text.startswith("."):
        return format_spec("folder", {"root": _absolute(text)})
    return text  # an unknown dataset name: resolving it reports the closest valid names


def init_path(init: str | None) -> str | None:
    """``--init`` made absolute, as the saved config keeps it."""
    return None if init is None else _absolute(init)


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weights only: never norms, biases or other 1-d parameters. Without weight decay,
    one group: optimizers loop over groups in Python, once per step."""
    if not weight_decay:
        return [{"params": [p for p in net.parameters() if p.requires_grad], "weight_decay": 0.0}]
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced dataset gets all ones (a class
    without training images gets 1: it never weighs a loss term)."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return (counts.sum() / (num_classes * counts.clamp_min(1))).float()


def _labels_of(split: Any) -> torch.Tensor:
    if isinstance(split, ImageTensors):
        return split.labels
    labels = getattr(split, "labels", None)
    if labels is None:
        raise ZooError("--class-weights auto / --balanced need a dataset that exposes labels")
    return torch.as_tensor(labels)


def check_processes(cfg: TrainConfig, world: int, device: torch.device) -> None:
    """Settings that depend on the number of processes."""
    if cfg.batch_size % world:
        raise ZooError(f"batch size {cfg.batch_size} does not split evenly over {world} processes")
    if cfg.sync_bn and world > 1 and device.type != "cuda":
        raise ZooError(
            "--sync-bn needs CUDA GPUs: torch's SyncBatchNorm does not run on the "
            f"{device.type} (gloo); leave it off, each process then normalizes its own share "
            "of the batch"
        )


def resume_config(run: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The configuration of the run in ``run`` with ``overrides`` applied; refuses directories
    that are not runs and overrides that would make it a different run.

    A run killed before its first checkpoint has only its ``config.toml``: it restarts from
    the first epoch, as it would have run.
    """
    from zoo.train.config import from_mapping, load_toml

    last = run / rundir.LAST
    if last.is_file():
        header = checkpoint.read_header(last)
        if header.state is None or "config" not in header.state:
            raise ZooError(f"--resume {run}: {rundir.LAST} is not a training checkpoint")
        saved = from_mapping(header.state["config"], where=str(last))
    elif rundir.started_run(run):
        saved = load_toml(run / "config.toml")
    else:
        raise ZooError(f"--resume {run}: not a zoo run directory (no {rundir.LAST})")
    if "data" in overrides:
        overrides = {**overrides, "data": data_spec(overrides["data"])}  # as the run saved it
    if overrides.get("init") is not None:
        overrides = {**overrides, "init": init_path(overrides["init"])}
    for key, value in overrides.items():
        if key in IDENTITY and value != getattr(saved, key):
            raise ZooError(
                f"--resume {run}: {key} differs from the run's "
                f"({value!r} vs {getattr(saved, key)!r}); start a new run instead"
            )
    out = overrides.get("out")
    if out is not None and Path(out).resolve() != run.resolve():
        raise ZooError(f"--resume {run} continues in that directory; leave out --out {out}")
    return from_mapping({**overrides, "resume": str(run), "out": str(run)}, base=saved)


class Trainer:
    """One training run. ``fit()`` does the work; build it with a TrainConfig."""

    def __init__(self, cfg: TrainConfig, reporter: Reporter | None = None) -> None:
        validate(cfg)
        self.cfg = cfg.replace(data=data_spec(cfg.data), init=init_path(cfg.init))
        self.init_source = cfg.init  # as given, for messages; the saved config has it absolute
        self.reporter = reporter or Reporter()

    # --- set-up ----------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.cfg
        self.dist: Dist = init_distributed(cfg.device)
        if not self.dist.main:
            self.reporter = Reporter()  # rank 0 alone reports
        # Ranks do different work in these blocks (rank 0 checks the output directory, one
        # process per machine prepares the data first), so a failure must stop them all.
        with together(self.dist):
            self.device = resolve_device(cfg.device, self.dist)
            self.amp_dtype = resolve_precision(cfg.precision, self.device)
            check_processes(cfg, self.dist.world, self.device)
            self.parts = resolve_components(cfg)
            if cfg.tensorboard and self.dist.main:
                _summary_writer()  # a missing package fails before the run directory changes
            out = cfg.out
            if out is None and self.dist.main:
                out = str(rundir.default_out(self.parts.arch.spec.name))
            if cfg.resume is None and self.dist.main:
                rundir.check_out(Path(out), cfg.overwrite)  # type: ignore[arg-type]
            seed_everything(cfg.seed)
            if self.dist.local_rank == 0:  # decodes, caches or downloads once per machine
                self.data = self._data()
        # Rank 0 alone writes, but messages on every rank name its (timestamped) directory.
        self.out = Path(out if cfg.out else broadcast_text(self.dist, out))
        with together(self.dist):
            if self.dist.local_rank != 0:
                self.data = self._data()
            self._build()
        self._wrap()

    def _data(self) -> DataSplits:
        cfg = self.cfg
        data = self.parts.dataset.build(
            image_size=parse_image_size(cfg.image_size),
            seed=cfg.seed,
            val_fraction=cfg.val_split,
            download=cfg.download,
        )
        if not isinstance(data, DataSplits):
            raise ZooError(
                f"{self.parts.dataset.label} returned {type(data).__name__}, "
                "not zoo.data.splits.DataSplits"
            )
        return data

    def _build(self) -> None:
        """Network, batches, loss, optimizer, schedule, EMA; then the saved state on resume."""
        cfg, data = self.cfg, self.data
        self.num_classes = len(data.classes)
        mean, std = data.mean, data.std
        last = Path(cfg.resume) / rundir.LAST if cfg.resume else None
        resuming = last is not None and last.is_file()
        if resuming:
            # The saved run decides: its --init source is not needed (nor read) again.
            saved = checkpoint.read_header(last).info
            if saved is not None:
                mean, std = saved.mean, saved.std
        elif cfg.init:
            from zoo.models.finetune import source_normalization

            found = source_normalization(self.init_source, data.in_chans)
            if found is not None:
                mean, std = found
                self.reporter.note(
                    f"init: inputs normalized as the weights were trained (mean {_short(mean)}, "
                    f"std {_short(std)})"
                )
        if mean is None or std is None:
            mean, std = self._stats(data.train)
        self.mean, self.std = tuple(mean), tuple(std)

        net = self.parts.arch.build(
            num_classes=self.num_classes, in_chans=data.in_chans, image_size=data.image_size
        )
        if not isinstance(net, nn.Module):
            raise ZooError(
                f"{self.parts.arch.label} returned {type(net).__name__}, not a torch.nn.Module"
            )
        if cfg.init and not resuming:
            from zoo.models.finetune import initialize

            note = initialize(net, self.init_source, self.num_classes, data.in_chans)
            self.reporter.note(note)
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
        )
        self._place(net)

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
        weight = None
        if cfg.class_weights == "auto":
            # On the device: a CPU tensor would be copied to the GPU (a sync) every step.
            weight = class_weights(_labels_of(data.train), self.num_classes).to(self.device)
            if "weight" not in _declared(self.parts.loss.factory):
                raise ZooError(f"{self.parts.loss.label} does not accept class weights")
        self.loss_fn = self.parts.loss.build(num_classes=self.num_classes, weight=weight)
        self.optimizer = self.parts.optimizer.build(
            params=param_groups(self.net, cfg.weight_decay), lr=cfg.lr
        )
        self.updates_per_epoch = math.ceil(len(self.train_batches) / cfg.accum_steps)
        monitor = self._monitor()
        self.best = _Best(monitor, mode_for(monitor))
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
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        if resuming:
            self._restore(last)
        elif cfg.resume:
            self.reporter.note("no epoch of this run had completed: starting from the first")

    def _monitor(self) -> str:
        """The metric --monitor names, checked against those this run records."""
        monitor, val = self.cfg.monitor, self.val_batches is not None
        names = ["train_loss", "train_accuracy"]
        if val:
            names += [f"val_{m}" for m in VAL_METRICS]
            if self.cfg.ema:
                names += [f"ema_val_{m}" for m in VAL_METRICS]
        if monitor in names:
            return monitor
        if not val and monitor.startswith(("val_", "ema_val_")) and monitor.endswith(VAL_METRICS):
            fallback = "train_accuracy" if monitor.endswith("accuracy") else "train_loss"
            self.reporter.note(f"no validation data: monitoring {fallback}")
            return fallback
        raise ZooError(
            f"--monitor {monitor}: not a metric of this run{did_you_mean(monitor, names)} "
            f"(choose from {', '.join(names)})"
        )

    def _stats(self, split: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if isinstance(split, ImageTensors):
            return channel_stats(split.images)
        # Streamed data: estimate from up to 512 evenly spaced training images.
        step = max(1, len(split) // 512)
        items = [split[i] for i in range(0, len(split), step)]
        images = [it[0] for it in items if it is not None]
        if not images:
            raise ZooError("no readable training images")
        return channel_stats(torch.stack(images))

    def _place(self, net: nn.Module) -> None:
        """Move the network to its device and memory format."""
        cfg = self.cfg
        has_conv = any(isinstance(m, nn.Conv2d) for m in net.modules())
        self.channels_last = (
            cfg.channels_last
            if cfg.channels_last is not None
            else self.device.type == "cuda" and has_conv
        )
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.dist.enabled and cfg.sync_bn:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.net = net  # the plain network: what is saved, averaged and evaluated
        self.params = sum(p.numel() for p in net.parameters())

    def _wrap(self) -> None:
        """Wrap for DDP (a collective: rank 0's weights go to every rank) and compile."""
        model: nn.Module = self.net
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(self.net, device_ids=ids)
        self.eval_model: Any = torch.compile(self.net) if self.cfg.compile else self.net
        self.model: Any = torch.compile(model) if self.cfg.compile else model

    # --- state -----------------------------------------------------------------------------

    def _state(self, epochs_done: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        np_state = np.random.get_state()
        rng["numpy"] = [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "epoch": epochs_done,
            "history": self.history,
            "best": {
                "metric": self.best.metric,
                "value": self.best.value,
                "epoch": self.best.epoch,
                "bad_epochs": self.best.bad_epochs,
            },
            "optimizer": flatten_state(self.optimizer.state_dict(), "optimizer", tensors),
            "scheduler": flatten_state(self.scheduler.state_dict(), "scheduler", tensors),
            "scaler": (
                flatten_state(self.scaler.state_dict(), "scaler", tensors) if self.scaler else None
            ),
            "rng": flatten_state(rng, "rng", tensors),
            "ema_updates": self.ema.updates if self.ema is not None else None,
            "config": self.cfg.to_dict(saved_only=True),
        }
        return tensors, state

    def _restore(self, path: Path) -> None:
        header = checkpoint.read_header(path)
        assert header.state is not None
        tensors = checkpoint.load_tensors(path)
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        from zoo.api import check_state

        check_state(self.net, model_state, path)
        self.net.load_state_dict(model_state)
        state = header.state
        if self.ema is not None:
            self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
            self.ema.updates = int(state.get("ema_updates") or 0)
        self.optimizer.load_state_dict(unflatten_state(state["optimizer"], tensors))
        self.scheduler.load_state_dict(unflatten_state(state["scheduler"], tensors))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(unflatten_state(state["scaler"], tensors))
        rng = unflatten_state(state["rng"], tensors)
        torch.set_rng_state(rng["torch"])
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        np.random.set_state(
            (rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:])
        )
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        best = state["best"]
        self.best.value, self.best.epoch = best["value"], best["epoch"]
        self.best.bad_epochs = best["bad_epochs"]
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"])

    def _save(self, epochs_done: int, is_best: bool) -> None:
        """Write weights and the training state (rank 0 only), each file atomically.

        ``last`` is written after everything derived from the same epoch: a run killed in
        between resumes from the previous epoch and rewrites them all.
        """
        try:
            self._write_epoch(epochs_done, is_best)
        except OSError as exc:
            kept = (
                f"epoch {epochs_done - 1} is complete there (resume with `zoo train --resume "
                f"{self.out}` once there is room)"
                if epochs_done > 1
                else "no epoch was saved"
            )
            raise ZooError(
                f"cannot write epoch {epochs_done} to {self.out}: {_os_reason(exc)}; {kept}",
                exit_code=1,
            ) from None

    def _write_epoch(self, epochs_done: int, is_best: bool) -> None:
        self.info.epoch = epochs_done
        weights = self.net.state_dict()
        checkpoint.save(self.out / "model.safetensors", weights, self.info)
        hfconfig.write(self.out, self.info, self.net)  # the run is also a timm/HF folder
        if self.ema is not None:
            checkpoint.save(self.out / "model_ema.safetensors", self.ema.state_dict(), self.info)
        tensors, state = self._state(epochs_done)
        blob = checkpoint.encode(tensors, self.info, state)
        if is_best:
            checkpoint.atomic_write(self.out / rundir.BEST, blob)
        if self.cfg.keep:
            checkpoint.atomic_write(
                self.out / f"checkpoints/epoch-{epochs_done:04d}.safetensors", blob
            )
        checkpoint.atomic_write(self.out / rundir.LAST, blob)
        if self.cfg.keep:
            for old in rundir.epoch_checkpoints(self.out)[: -self.cfg.keep]:
                old.unlink(missing_ok=True)
        rundir.write_metrics(self.out, self.history)

    # --- loops -----------------------------------------------------------------------------

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        seed_everything(epoch_seed(cfg.seed, epoch, self.dist.rank))
        meter = Accumulator(self.device)
        steps = len(self.train_batches)
        accum = cfg.accum_steps
        amp = autocast(self.device, self.amp_dtype)
        world = self.dist.world
        pending = False  # gradients accumulated but not yet applied
        for step, (x, y) in enumerate(self.train_batches.epoch(epoch)):
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
        """Loss, accuracy, macro precision/recall/F1 on the validation split."""
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
        )
        metrics = from_confusion(result.confusion)
        return {
            f"{prefix}{k}": v
            for k, v in (
                ("loss", result.loss),
                ("accuracy", metrics["accuracy"]),
                ("precision", metrics["precision"]),
                ("recall", metrics["recall"]),
                ("f1", metrics["f1"]),
            )
        }

    def fit(self) -> RunResult:
        started = time.perf_counter()
        try:
            self._setup()
            return self._run(started)
        finally:
            dist = self.__dict__.get("dist")
            if dist is not None and dist.enabled and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def _prepare_out(self) -> Any:
        """Create (or take over) the run directory; returns the TensorBoard writer, if any."""
        try:
            return self._prepare_out_files()
        except OSError as exc:
            reason = _os_reason(exc)
            raise ZooError(f"cannot write the run directory {self.out}: {reason}") from None

    def _prepare_out_files(self) -> Any:
        cfg = self.cfg
        if cfg.resume is None:
            if cfg.overwrite:
                rundir.clear_previous(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
        else:
            rundir.remove_partial(self.out)
        rundir.write_config(self.out, cfg.to_dict(saved_only=True), __version__)
        if self.history:
            rundir.write_metrics(self.out, self.history)
        return self._tensorboard() if cfg.tensorboard else None

    def _run(self, started: float) -> RunResult:
        cfg, main = self.cfg, self.dist.main
        writer = None
        with together(self.dist):
            if main:
                writer = self._prepare_out()
        header = {
            "arch": self.parts.arch.component.qualified,
            "params": f"{self.params:,}",
            "data": f"{len(self.data.train)} train / "
            f"{len(self.data.val) if self.data.val is not None else 0} val, "
            f"{self.num_classes} classes, {self.data.in_chans}x"
            f"{self.data.image_size[0]}x{self.data.image_size[1]}",
            "device": f"{self.device}" + (f" x{self.dist.world}" if self.dist.enabled else ""),
            "precision": str(self.amp_dtype).removeprefix("torch."),
            "out": str(self.out),
        }
        if cfg.resume:
            header["resumed at epoch"] = str(self.start_epoch)
        self.reporter.start(header)
        stopped: str | None = None
        try:
            with sigterm_as_interrupt():
                for epoch in range(self.start_epoch, cfg.epochs):
                    record = self._epoch(epoch)
                    value = record[self.best.metric]
                    is_best = self.best.improved(value)
                    if is_best:
                        self.best.value, self.best.epoch, self.best.bad_epochs = value, epoch + 1, 0
                    else:
                        self.best.bad_epochs += 1
                    if self.plateau:
                        self.scheduler.step(value)
                    self.history.append(record)
                    with together(self.dist), signals_deferred():
                        if main:
                            self._save(epoch + 1, is_best)
                            if writer is not None:
                                for k, v in record.items():
                                    if isinstance(v, (int, float)) and k != "epoch":
                                        writer.add_scalar(k, v, epoch + 1)
                                writer.flush()
                    self.reporter.epoch_end(record)
                    if cfg.patience is not None and self.best.bad_epochs >= cfg.patience:
                        stopped = "early_stopping"
                        self.reporter.note(
                            f"early stopping: {self.best.metric} has not improved for "
                            f"{cfg.patience} epochs (best {self.best.value:.4f} at epoch "
                            f"{self.best.epoch})"
                        )
                        break
        except KeyboardInterrupt:
            if not main:
                raise Secondary("interrupted", exit_code=130) from None
            raise Interrupted(self._interrupt_message()) from None
        except _NonFinite:
            # Every rank sees the all-reduced flag; rank 0 alone says so.
            if not main:
                raise Secondary("non-finite loss", exit_code=1) from None
            done = len(self.history)
            kept = (
                f"the last good weights (epoch {done}) are in {self.out}"
                if done
                else "no epoch completed, so nothing was saved"
            )
            raise ZooError(
                f"the loss became NaN or infinite in epoch {done + 1}; stopped: "
                f"{kept}. Try a lower --lr or --clip-grad.",
                exit_code=1,
            ) from None
        finally:
            if writer is not None:
                writer.close()
        summary = {
            "epochs_completed": len(self.history),
            "stopped": stopped,
            "best": {
                "metric": self.best.metric,
                "value": self.best.value,
                "epoch": self.best.epoch,
            },
            "wall_seconds": round(time.perf_counter() - started, 3),
            **_throughput(self.history),
            "memory": max_over_ranks(self.dist, peak_memory_mb(self.device)),
            "skipped_images": _skipped(self.data),
            "weights": str(self.out / "model.safetensors"),
            "device": str(self.device),
            "world_size": self.dist.world,
        }
        with together(self.dist):
            if main:
                rundir.write_summary(self.out, summary)
        self.reporter.finish(summary)
        return RunResult(self.out, self.history, summary, stopped)

    def _epoch(self, epoch: int) -> dict[str, Any]:
        steps = len(self.train_batches)
        self.reporter.epoch_start(epoch, self.cfg.epochs, steps)
        # The run's first epoch also counts the files decoded at set-up (for the statistics).
        decoded_before = 0 if epoch == self.start_epoch else _decoded(self.train_batches)
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
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["seconds"] = round(seconds, 4)
        record["images_per_second"] = round(seen / seconds, 1) if seconds else 0.0
        record["rss_mb"] = current_rss_mb()
        decoded_after = _decoded(self.train_batches)
        if decoded_after is not None:
            record["decoded_images"] = decoded_after - (decoded_before or 0)
        return record

    def _interrupt_message(self) -> str:
        done = len(self.history)
        if not done:
            return (
                "interrupted before the first epoch completed: no weights were saved; start "
                f"it again with `zoo train --resume {self.out}`"
            )
        return (
            f"interrupted in epoch {done + 1}: the weights of epoch {done} are in "
            f"{self.out / 'model.safetensors'}; continue with "
            f"`zoo train --resume {self.out}`"
        )

    def _tensorboard(self) -> Any:
        return _summary_writer()(str(self.out / "tensorboard"))


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ZooError(
            "--tensorboard needs the tensorboard package: pip install 'zoo[tensorboard]'"
        ) from None
    return SummaryWriter


def _os_reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _throughput(history: list[dict[str, Any]]) -> dict[str, float]:
    """Training time and images/s over every epoch of the run, resumed ones included."""
    seconds = sum(r["seconds"] for r in history)
    images = sum(r["seconds"] * r["images_per_second"] for r in history)
    return {
        "train_seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 1) if seconds else 0.0,
    }


def _skipped(data: DataSplits) -> int:
    """Unreadable images: found at load time, or met while streaming (datasets that can say)."""
    streamed = [
        split.unreadable()
        for split in (data.train, data.val)
        if callable(getattr(split, "unreadable", None))
    ]
    return len(data.skipped) + sum(len(found) for found in streamed)


def _short(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


class _NonFinite(Exception):
    pass


def _decoded(batches: Any) -> int | None:
    counter = getattr(batches, "decoded", None)
    return counter() if callable(counter) else None


def _declared(factory: Any) -> list[str]:
    from zoo.plugins.specs import accepted_params

    return accepted_params(factory) or []
