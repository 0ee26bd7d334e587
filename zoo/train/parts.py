"""The parts of a run, from its configuration: components resolved by name (before any data is
read), then built into the network's parameter groups, class weights and callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.data.source import resolve_data
from zoo.errors import ZooError
from zoo.plugins.components import Resolved, resolve

if TYPE_CHECKING:
    import torch
    from torch import nn

    from zoo.data.splits import DataSplits
    from zoo.train.config import TrainConfig
    from zoo.train.events import Attached
    from zoo.train.runtime import Dist


@dataclass
class Components:
    """Every component a run names, resolved and its parameters checked, nothing built."""

    arch: Resolved
    dataset: Resolved
    val_data: Resolved | None
    augs: list[Resolved]
    loss: Resolved | None  # None: the task's default, resolved once the data says the task
    optimizer: Resolved
    scheduler: Resolved
    callbacks: list[Resolved]
    arch_given: bool = True  # False: the default, which the task may replace


# The architecture of a run that names none, until its task says otherwise.
DEFAULT_ARCH = "simplecnn"


def callback_specs(cfg: TrainConfig) -> list[str]:
    """``--callback`` specs, then the built-in callbacks that options ask for."""
    specs = list(cfg.callback)
    if cfg.patience is not None:
        specs.append(f"zoo:early_stopping:patience={cfg.patience}")
    if cfg.tensorboard:
        specs.append("zoo:tensorboard")
    return specs


def resolve_components(cfg: TrainConfig) -> Components:
    """Resolve every component named in the (normalised) config; fails fast, before any data
    is read or any process starts."""
    return Components(
        arch=resolve("architecture", cfg.arch or DEFAULT_ARCH),
        dataset=resolve_data(cfg.data),
        val_data=resolve_data(cfg.val_data) if cfg.val_data else None,
        augs=[resolve("augmentation", a) for a in cfg.aug],
        loss=resolve("loss", cfg.loss) if cfg.loss else None,
        optimizer=resolve("optimizer", cfg.optimizer),
        scheduler=resolve("scheduler", cfg.scheduler),
        callbacks=[resolve("callback", c) for c in callback_specs(cfg)],
        arch_given=cfg.arch is not None,
    )


def settle(cfg: TrainConfig, parts: Components) -> tuple[TrainConfig, str | None]:
    """The configuration as the run records it, and how its image size was chosen (None when
    given or the dataset's own).

    Every component is recorded by the qualified ``plugin:name`` it resolved to, so a plugin
    that registers the same name later never changes what the run resumes or evaluates with.
    A run without ``--image-size`` gets the size its data source proposes (a folder: its
    images' median size, capped by the architecture's default input size), recorded so that
    resuming keeps it.
    """
    cfg = cfg.replace(
        arch=parts.arch.recorded,
        data=parts.dataset.recorded,
        val_data=parts.val_data.recorded if parts.val_data else None,
        aug=[r.recorded for r in parts.augs],
        loss=parts.loss.recorded if parts.loss else None,
        optimizer=parts.optimizer.recorded,
        scheduler=parts.scheduler.recorded,
        callback=[r.recorded for r in parts.callbacks[: len(cfg.callback)]],
    )
    if cfg.image_size is not None:
        return cfg, None
    from zoo.data.source import proposed_size
    from zoo.train.config import format_image_size

    default = getattr(parts.arch.factory, "default_image_size", None)
    cap = (224, 224) if not default else (int(default[0]), int(default[1]))
    size = proposed_size(parts.dataset, cap)
    if size is None:
        return cfg, None
    return cfg.replace(image_size=size), f"{format_image_size(size)} (from the images)"


def build_callbacks(resolved: list[Resolved]) -> list[Attached]:
    """The run's callbacks, each named for its saved state (``plugin:name``, ``#2`` for a
    second copy) and for messages (with the distribution it comes from)."""
    from zoo.train.events import Attached

    attached, seen = [], {}
    for r in resolved:
        qualified = r.component.qualified
        seen[qualified] = seen.get(qualified, 0) + 1
        key = qualified if seen[qualified] == 1 else f"{qualified}#{seen[qualified]}"
        label = f"callback {qualified!r} ({r.component.source})"
        attached.append(Attached(key, label, r.build()))
    return attached


@dataclass
class InitWeights:
    """The weights a run starts from (``--init``, or ``--pretrained``'s Hub repository): the
    local file, the source as the user named it, and the option that named it (for messages)."""

    path: Path
    source: str
    option: str
    warning: str | None = None  # the weights name another architecture (architecture_warning)

    @property
    def label(self) -> str | None:
        """How messages name a Hub source (rather than its path in the cache)."""
        return self.source if self.source.startswith("hf-hub:") else None


def init_weights(cfg: TrainConfig, arch: Resolved) -> InitWeights | None:
    """What the run starts from, a Hub repository downloaded here (once per machine), so that
    a missing or refused download stops the run before anything is written; None without
    ``--init``/``--pretrained``, or when resuming from a saved epoch."""
    from zoo.models.finetune import architecture_warning, init_file
    from zoo.models.hub import pretrained_source
    from zoo.train import rundir

    if cfg.resume and (Path(cfg.resume) / rundir.LAST).is_file():
        return None
    if cfg.pretrained:
        from zoo.plugins.build import get_registry

        try:
            source = pretrained_source(get_registry().find_pretrained(arch.spec.ref))
        except ZooError as exc:
            raise ZooError(f"--pretrained: {exc}") from None
        option = "--pretrained"
    elif cfg.init:
        source, option = cfg.init, "--init"
    else:
        return None
    path = init_file(source, option)
    shown = source if source.startswith("hf-hub:") else str(path)
    warning = architecture_warning(path, arch.component.qualified, shown, option)
    return InitWeights(path, source, option, warning)


def param_groups(
    net: nn.Module,
    weight_decay: float,
    layer_decay: float | None = None,
    arch: Resolved | None = None,
    lr: float = 1.0,
) -> list[dict[str, Any]]:
    """Decay weights only: never norms, biases or other 1-d parameters. Without weight decay,
    one group: optimizers loop over groups in Python, once per step.

    With ``layer_decay``, the architecture's own grouping (a ``layer_decay_groups`` method on
    its factory, as zoo-timm's have) gives every layer its group and its rate: ``lr`` times its
    ``lr_scale``, set on the group so that every scheduler scales it alike."""
    if layer_decay is not None:
        grouping = getattr(arch.factory, "layer_decay_groups", None) if arch else None
        label = arch.label if arch else "this network"
        if not callable(grouping):
            raise ZooError(
                f"--layer-decay: {label} has no layer grouping (timm's architectures have one)"
            )
        try:
            groups = grouping(net, weight_decay, layer_decay)
        except ZooError as exc:
            raise ZooError(f"--layer-decay: {exc}") from None
        return [
            {**{k: v for k, v in g.items() if k != "lr_scale"}, "lr": lr * g.get("lr_scale", 1)}
            for g in groups
        ]
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


def build_optimizer(
    resolved: Resolved, net: nn.Module, cfg: TrainConfig, arch: Resolved | None = None
) -> Any:
    """The optimizer over ``param_groups`` (``arch`` groups layers for ``--layer-decay``);
    without ``--compile`` it runs without importing torch._dynamo (``zoo.train.eager``: seconds
    of a short run's start-up)."""
    from zoo.train.eager import skip_dynamo

    if not cfg.compile:
        skip_dynamo()
    groups = param_groups(net, cfg.weight_decay, cfg.layer_decay, arch, cfg.lr)
    optimizer = resolved.build(params=groups, lr=cfg.lr)
    if not cfg.compile:
        skip_dynamo(optimizer)
    return optimizer


def settle_task(cfg: TrainConfig, parts: Components, data: DataSplits) -> tuple[TrainConfig, Any]:
    """The run's task (``zoo.labeling.task``), from its data or ``--task``, and the
    configuration with what the task decides: the architecture, the loss and the monitored
    metric unless given, and ``task`` itself (recorded when not single-label, or when
    given)."""
    from zoo.data.source import source_of
    from zoo.labeling.task import SINGLE, choose_task, task_named

    folders = source_of(parts.dataset.factory).folders
    name = choose_task(cfg.task, data.multi_label, parts.dataset.label, folders)
    task = task_named(name)
    if cfg.balanced and name != SINGLE:
        raise ZooError(
            "--balanced samples images by their class, and a multi-label image has several; "
            "use --class-weights auto to weigh rare labels"
        )
    if parts.loss is None:
        parts.loss = resolve("loss", task.default_loss)
    if not parts.arch_given and task.default_arch != DEFAULT_ARCH:
        parts.arch = resolve("architecture", task.default_arch)
    settled = cfg.replace(
        arch=parts.arch.recorded,
        loss=parts.loss.recorded,
        monitor=cfg.monitor or task.default_monitor,
        task=cfg.task if name == SINGLE else name,
    )
    return settled, task


def labels_of(split: Any) -> torch.Tensor:
    """A split's labels as one tensor (in memory, or as a streamed dataset exposes them:
    label sets padded, ``label_tensor``)."""
    from zoo.data.splits import label_tensor, split_labels

    labels = split_labels(split)
    if labels is None:
        raise ZooError("--class-weights auto / --balanced need a dataset that exposes labels")
    return label_tensor(labels)


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


def build_loss(
    resolved: Resolved,
    class_weighting: str,
    train: Any,
    num_classes: int,
    device: torch.device,
    task: Any,
) -> Any:
    """The loss, given the task's class weights with ``--class-weights auto``, and told
    whether the run is multi-label when it asks (``multi_label``)."""
    from zoo.labeling.task import MULTI
    from zoo.plugins.specs import accepted_params

    accepted = accepted_params(resolved.factory) or []
    weight = None
    if class_weighting == "auto":
        if "weight" not in accepted:
            raise ZooError(f"{resolved.label} does not accept class weights")
        # On the device: a CPU tensor would be copied to the GPU (a sync) every step.
        weight = task.class_weights(labels_of(train), num_classes).to(device)
    extra = {"multi_label": task.name == MULTI} if "multi_label" in accepted else {}
    return resolved.build(num_classes=num_classes, weight=weight, **extra)


def monitored(cfg: TrainConfig, has_val: bool, note: Callable[[str], None], task: Any) -> str:
    """The metric ``--monitor`` names, checked against those this run (of ``task``, a
    ``zoo.labeling.task`` task) records (a validation metric falls back to its training twin
    when there is no validation data)."""
    from zoo.errors import did_you_mean

    val_metrics = task.val_metrics
    monitor = cfg.monitor or task.default_monitor
    names = ["train_loss", "train_accuracy"]
    if has_val:
        names += [f"val_{m}" for m in val_metrics]
        if cfg.ema:
            names += [f"ema_val_{m}" for m in val_metrics]
    if monitor in names:
        return monitor
    if not has_val and monitor.startswith(("val_", "ema_val_")) and monitor.endswith(val_metrics):
        fallback = "train_accuracy" if monitor.endswith("accuracy") else "train_loss"
        note(f"no validation data: monitoring {fallback}")
        return fallback
    raise ZooError(
        f"--monitor {monitor}: not a metric of this run{did_you_mean(monitor, names)} "
        f"(choose from {', '.join(names)})"
    )


def split_stats(split: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a training split (streamed: from up to 512 evenly spaced
    images; a stream: its first 512)."""
    import itertools

    import torch

    from zoo.data.splits import ImageTensors, channel_stats, is_stream

    if isinstance(split, ImageTensors):
        return channel_stats(split.images)
    if is_stream(split):
        set_epoch = getattr(split, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(0)
        items = list(itertools.islice(iter(split), 512))
    else:
        step = max(1, len(split) // 512)
        items = [split[i] for i in range(0, len(split), step)]
    images = [torch.as_tensor(it[0]) for it in items if it is not None]
    if not images:
        raise ZooError("no readable training images")
    return channel_stats(torch.stack(images))


def build_data(
    resolved: Resolved, cfg: TrainConfig, val_data: Resolved | None = None
) -> DataSplits:
    """The dataset's splits at the run's image size; with ``--val-data``, its validation split
    replaced by that source's default split, at the same size and in the same class order."""
    import dataclasses

    from zoo.data.relabel import label_map, pick_split, relabel
    from zoo.data.source import build_splits, default_split, for_channels

    data = build_splits(
        resolved,
        image_size=cfg.image_size,
        seed=cfg.seed,
        val_fraction=0.0 if val_data is not None else cfg.val_split,
        download=cfg.download,
    )
    if val_data is None:
        return data
    split = default_split(val_data)
    other = build_splits(
        for_channels(val_data, data.in_chans),
        image_size=tuple(data.image_size),
        seed=cfg.seed,
        val_fraction=0.0 if split == "all" else cfg.val_split,
        download=cfg.download,
    )
    where = f"--val-data {cfg.val_data}"
    if other.in_chans != data.in_chans or tuple(other.image_size) != tuple(data.image_size):
        raise ZooError(f"{where}: its images are not {data.in_chans}x{data.image_size}")
    val = relabel(pick_split(other, split, where), label_map(other.classes, data.classes, where))
    return dataclasses.replace(data, val=val, skipped=data.skipped + other.skipped)


def normalization(
    init: InitWeights | None, data: DataSplits, last: Path | None, note: Callable[[str], None]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalization: the saved run's when resuming from ``last``, the ``--init``
    weights' when they say, else the dataset's, else the training images' own statistics.

    Fine-tuned weights keep working best on inputs normalized as in their first training (an
    ImageNet model expects ImageNet statistics), not by the new dataset's statistics.
    """
    mean, std = data.mean, data.std
    if last is not None:
        from zoo.models.weights import read_header

        saved = read_header(last).info
        if saved is not None:
            mean, std = saved.mean, saved.std
    elif init:
        from zoo.models.finetune import source_normalization

        found = source_normalization(init.path, data.in_chans)
        if found is not None:
            mean, std = found
            note(
                f"init: inputs normalized as the weights were trained (mean {_short(mean)}, "
                f"std {_short(std)})"
            )
    if mean is None or std is None:
        mean, std = split_stats(data.train)
    return tuple(mean), tuple(std)


def build_network(
    resolved: Resolved,
    cfg: TrainConfig,
    data: DataSplits,
    device: torch.device,
    dist: Dist,
    note: Callable[[str], None],
    *,
    init: InitWeights | None,
) -> tuple[nn.Module, bool]:
    """The architecture built, initialised from ``init`` when given, on its device and in
    its memory format; and whether that format is channels-last."""
    import torch
    from torch import nn

    from zoo.device.defaults import use_channels_last

    num_classes = len(data.classes)
    net = resolved.build(
        num_classes=num_classes, in_chans=data.in_chans, image_size=data.image_size
    )
    if not isinstance(net, nn.Module):
        raise ZooError(f"{resolved.label} returned {type(net).__name__}, not a torch.nn.Module")
    if init is not None:
        from zoo.models.finetune import initialize

        note(initialize(net, init.path, num_classes, data.in_chans, init.option, init.label))
        if init.warning:  # the tensors fit: the weights' own name for them was another
            note(init.warning)
    channels_last = use_channels_last(cfg.channels_last, device, net, cfg.precision)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if dist.enabled and cfg.sync_bn:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return net, channels_last


def _short(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"
