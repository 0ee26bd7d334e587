"""The training run's configuration: one dataclass behind the CLI options, ``--config`` files
and the ``config.toml`` written into every run directory.

Precedence: defaults < ``--config FILE.toml`` < options given on the command line. Values are
normalised once, where they enter (``from_mapping`` for the command line and TOML files,
``normalize`` for a ``TrainConfig`` built in Python): the image size becomes an ``(h, w)``
tuple, and ``--data`` paths (a bare path, a location, ``root=``) and ``--init`` become absolute,
so a saved config evaluates and resumes from any working directory. No registry is asked.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from zoo.device.precision import PRECISIONS
from zoo.errors import ZooError, did_you_mean, shown


def _opt(default: Any, help: str, **extra: Any) -> Any:
    meta = {"help": help, **extra}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a training run. Field docs are the CLI help."""

    arch: str | None = _opt(
        None,
        "Architecture: NAME[:key=value,...] (default: simplecnn; on multi-label data "
        "simplecnn:pool=max).",
        metavar="NAME[:K=V,...]",
        panel="Components",
    )
    data: str = _opt(
        "digits",
        "Dataset NAME[:key=value,...], NAME:LOCATION (hf:ORG/NAME, wds:DIR_OR_URL), a folder of "
        "class folders or a table (.csv, .tsv, .parquet).",
        metavar="NAME|PATH",
        panel="Components",
    )
    val_data: str | None = _opt(
        None,
        "Validate on this data instead of a split of --data (any form --data takes; its "
        "default split, as zoo eval --data judges it).",
        metavar="NAME|PATH",
        panel="Components",
    )
    aug: list[str] = _opt(
        [],
        "Augmentation NAME[:key=value,...]; repeat for several, applied in order.",
        panel="Components",
    )
    loss: str | None = _opt(
        None,
        "Loss NAME[:key=value,...] (default: cross_entropy; bce for multi-label data).",
        metavar="NAME[:K=V,...]",
        panel="Components",
    )
    optimizer: str = _opt(
        "adam", "Optimizer NAME[:key=value,...].", metavar="NAME[:K=V,...]", panel="Components"
    )
    scheduler: str = _opt(
        "constant",
        "Learning-rate schedule NAME[:key=value,...].",
        metavar="NAME[:K=V,...]",
        panel="Components",
    )
    init: str | None = _opt(
        None,
        "Start from weights: a .safetensors file, a run directory, a timm/Hugging Face folder "
        "or hf-hub:ORG/NAME[@REVISION].",
        panel="Components",
        metavar="PATH|hf-hub:REPO",
    )
    pretrained: bool = _opt(
        False,
        "Start from the architecture's pretrained weights on the Hugging Face Hub (--arch "
        "NAME.TAG, or NAME for its default tag; see zoo list --pretrained).",
        panel="Components",
    )
    callback: list[str] = _opt(
        [],
        "Training callback NAME[:key=value,...] (zoo list callbacks); repeat for several.",
        panel="Components",
    )

    epochs: int = _opt(10, "Training epochs.", panel="Training")
    batch_size: int = _opt(64, "Global batch size (split across processes).", panel="Training")
    lr: float = _opt(1e-3, "Peak learning rate.", panel="Training")
    weight_decay: float = _opt(
        0.0, "Weight decay (never applied to norms and biases).", panel="Training"
    )
    image_size: tuple[int, int] | None = _opt(
        None,
        "Input size: N or HxW (default: the dataset's own).",
        metavar="N|HxW",
        panel="Training",
    )
    val_split: float = _opt(
        0.2,
        "Fraction held out for validation when the data has no validation split.",
        panel="Training",
    )
    freeze_epochs: int = _opt(
        0,
        "Train only the classifier for the first N epochs (the backbone and its BatchNorm "
        "statistics frozen), then everything.",
        panel="Training",
    )
    layer_decay: float | None = _opt(
        None,
        "Layer-wise learning-rate decay: each layer learns at this factor of the rate of the "
        "layer above it (timm architectures).",
        panel="Training",
    )
    accum_steps: int = _opt(1, "Gradient accumulation steps per optimizer step.", panel="Training")
    clip_grad: float | None = _opt(None, "Clip the gradient norm to this value.", panel="Training")
    ema: bool = _opt(
        False,
        "Keep an exponential moving average of the weights, evaluated and saved beside them.",
        panel="Training",
    )
    ema_decay: float = _opt(0.999, "EMA decay per optimizer step.", panel="Training")
    class_weights: str = _opt(
        "none",
        "none | auto (inverse class frequency, passed to the loss; multi-label: each class's "
        "negatives over positives, as the positive weight).",
        panel="Training",
    )
    balanced: bool = _opt(
        False, "Sample classes evenly (for imbalanced folders).", panel="Training"
    )
    patience: int | None = _opt(
        None, "Stop after this many epochs without improvement of --monitor.", panel="Training"
    )
    monitor: str | None = _opt(
        None,
        "Metric for best checkpoint and early stopping (default: val_accuracy; val_map for "
        "multi-label data; val_loss, val_f1, val_f1_micro, ...).",
        panel="Training",
    )
    task: str | None = _opt(
        None,
        "multilabel | single (default: from the data: several labels per image make it "
        "multi-label).",
        metavar="TASK",
        panel="Training",
        unset_unsaved=True,
    )
    threshold: float | None = _opt(
        None,
        "Multi-label: one probability threshold for every class (default: each class's own, "
        "chosen on the validation split to maximise its F1).",
        panel="Training",
        unset_unsaved=True,
    )
    seed: int = _opt(
        0, "Random seed: the same seed and command give the same weights on CPU.", panel="Training"
    )

    device: str = _opt(
        "auto",
        "auto | cpu | cuda | cuda:N | mps (auto takes the GPU).",
        metavar="DEVICE",
        panel="Hardware",
    )
    precision: str = _opt(
        "auto",
        "auto (bf16 on CUDA; on CPUs with AMX, bf16 for non-convolutional nets; else fp32)"
        " | fp32 | bf16 | fp16.",
        metavar="PRECISION",
        panel="Hardware",
    )
    channels_last: bool | None = _opt(
        None,
        "Channels-last memory format (default: on for convolutional nets on CUDA and on CPUs "
        "with AVX-512).",
        panel="Hardware",
    )
    compile: bool = _opt(False, "torch.compile the model.", panel="Hardware")
    workers: int | None = _opt(
        None,
        "Data loading workers and decoding threads (default: the cores, at most 8).",
        panel="Hardware",
        min=0,
    )
    threads: int | None = _opt(
        None,
        "CPU threads of torch's operations (default: torch's own, the cores). Results on the CPU "
        "depend on the count bit for bit: the same seed and threads give the same weights.",
        panel="Hardware",
    )
    nproc: int = _opt(
        1, "Processes for distributed data-parallel training on this machine.", panel="Hardware"
    )
    sync_bn: bool = _opt(
        False, "Convert BatchNorm to SyncBatchNorm when distributed.", panel="Hardware"
    )

    out: str | None = _opt(
        None, "Run directory (default: runs/ARCH-TIMESTAMP).", panel="Output", metavar="DIR"
    )
    overwrite: bool = _opt(False, "Replace a previous run in --out.", panel="Output", saved=False)
    resume: str | None = _opt(
        None, "Continue the run in this directory.", panel="Output", metavar="DIR", saved=False
    )
    keep: int = _opt(0, "Also keep the N most recent per-epoch checkpoints.", panel="Output")
    tensorboard: bool = _opt(
        False, "Write TensorBoard logs into the run directory.", panel="Output"
    )
    download: bool = _opt(False, "Let torchvision datasets download missing files.", panel="Output")

    def __post_init__(self) -> None:
        self.image_size = parse_image_size(self.image_size)

    def to_dict(self, *, saved_only: bool = False) -> dict[str, Any]:
        """Plain values (for TOML/JSON), without the per-invocation fields if saved_only (nor
        the settings recorded only when set, such as ``task``, while unset: the records of
        single-label runs stay those of runs before multi-label ones)."""
        values = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not saved_only
            or (
                f.metadata.get("saved", True)
                and not (f.metadata.get("unset_unsaved") and getattr(self, f.name) is None)
            )
        }
        values["image_size"] = format_image_size(self.image_size)
        return values

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in fields(TrainConfig)}


def from_mapping(
    values: dict[str, Any], *, base: TrainConfig | None = None, where: str = "config"
) -> TrainConfig:
    """Overlay ``values`` on ``base``, refusing unknown keys and values of the wrong type;
    the result is normalised."""
    cfg = base or TrainConfig()
    changes = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ZooError(f"{where}: unknown setting {shown(key)}{did_you_mean(name, FIELDS)}")
        changes[name] = _coerce(name, value, where)
    return normalize(cfg.replace(**changes))


def normalize(cfg: TrainConfig) -> TrainConfig:
    """``--data`` with absolute paths, an ``--init`` path absolute (a Hub repository,
    ``hf-hub:ORG/NAME``, stays as it is), ``--task`` as the name a run records (idempotent)."""
    init = cfg.init
    if init is not None and not init.startswith("hf-hub:"):
        from zoo.files.reading import absolute

        init = absolute(init)
    val_data = data_spec(cfg.val_data) if cfg.val_data else None
    from zoo.labeling.task import parse_task

    task = parse_task(cfg.task)
    return cfg.replace(data=data_spec(cfg.data), val_data=val_data, init=init, task=task)


def data_spec(text: str) -> str:
    """``--data`` with its local paths absolute (``zoo.data.source.normalize_data``): which
    source reads it is decided when it is resolved, never here."""
    from zoo.data.source import normalize_data

    return normalize_data(text)


def load_toml_values(path: Path) -> dict[str, Any]:
    """Read a ``--config`` file (a flat table of TrainConfig settings), checking every key
    and value; returns the raw values so they can be layered under command-line options."""
    from zoo.files.reading import read_toml

    values = read_toml(path)
    values.pop("zoo_version", None)
    from_mapping(values, where=str(path))
    return values


def load_toml(path: Path, base: TrainConfig | None = None) -> TrainConfig:
    """A TrainConfig from a ``--config`` file."""
    return from_mapping(load_toml_values(path), base=base, where=str(path))


def dump_toml(values: dict[str, Any]) -> str:
    """Write a flat table of scalars and lists as TOML (None values are left out)."""
    lines = []
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = FIELDS[name].type
    optional = "None" in str(kind)
    if value is None:
        if optional:
            return None
        raise ZooError(f"{where}: {name} cannot be empty")
    base = str(kind).replace(" | None", "")
    try:
        if base == "list[str]":
            items = value if isinstance(value, (list, tuple)) else [value]
            return [str(v) for v in items]
        if base == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if base == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base == "float":
            return float(value)
        if name == "image_size":
            return parse_image_size(value)
        return str(value)
    except (TypeError, ValueError):
        raise ZooError(f"{where}: {name} must be {base}, got {shown(value)}") from None


def parse_image_size(text: Any) -> tuple[int, int] | None:
    """The one parser of image sizes (``zoo train``, ``benchmark``, ``info``, TOML files):
    ``32`` or ``"32"`` -> (32, 32); ``"32x48"`` or ``[32, 48]`` -> (32, 48); None stays None."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        if len(text) != 2 or not all(isinstance(v, int) for v in text):
            raise ZooError(f"image size must be N or HxW, got {shown(text)}")
        text = f"{text[0]}x{text[1]}"
    if isinstance(text, (bool, float)):
        raise ZooError(f"image size must be N or HxW, got {shown(text)}")
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+)\s*)?", str(text))
    if not match:
        raise ZooError(f"image size must be N or HxW, got {shown(text)}")
    h = int(match.group(1))
    w = int(match.group(2) or h)
    if h < 1 or w < 1:
        raise ZooError(f"image size must be positive, got {shown(text)}")
    return h, w


def format_image_size(size: tuple[int, int] | None) -> str | None:
    """``(32, 32)`` -> ``"32"``, ``(32, 48)`` -> ``"32x48"``: how config files keep it."""
    if size is None:
        return None
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def validate(cfg: TrainConfig) -> None:
    """Checks that need no plugin: ranges and choices. Every float must be finite: ``inf``
    and ``nan`` parse as floats, and compare as no range check expects."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ZooError(f"{f.name.replace('_', ' ')} must be a finite number, got {value}")
    checks = [
        (cfg.epochs >= 1, "epochs must be at least 1"),
        (cfg.batch_size >= 1, "batch size must be at least 1"),
        (cfg.lr > 0, "learning rate must be positive"),
        (cfg.weight_decay >= 0, "weight decay cannot be negative"),
        (0 <= cfg.val_split < 1, "val split must be in [0, 1)"),
        (cfg.accum_steps >= 1, "accum steps must be at least 1"),
        (cfg.clip_grad is None or cfg.clip_grad > 0, "clip grad must be positive"),
        (0 < cfg.ema_decay < 1, "ema decay must be in (0, 1)"),
        (cfg.class_weights in ("none", "auto"), "class weights must be none or auto"),
        (
            cfg.threshold is None or 0 < cfg.threshold < 1,
            "threshold must be a probability in (0, 1)",
        ),
        (cfg.patience is None or cfg.patience >= 1, "patience must be at least 1"),
        (cfg.keep >= 0, "keep cannot be negative"),
        (cfg.freeze_epochs >= 0, "freeze epochs cannot be negative"),
        (
            cfg.layer_decay is None or 0 < cfg.layer_decay <= 1,
            "layer decay must be in (0, 1]",
        ),
        (not (cfg.pretrained and cfg.init), "choose one of --pretrained and --init"),
        (cfg.nproc >= 1, "nproc must be at least 1"),
        (cfg.workers is None or cfg.workers >= 0, "workers cannot be negative"),
        (cfg.threads is None or cfg.threads >= 1, "threads must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ZooError(message)
    if cfg.precision not in PRECISIONS:
        raise ZooError(f"precision must be one of {', '.join(PRECISIONS)}")
