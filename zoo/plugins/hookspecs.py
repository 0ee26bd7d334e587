"""The plugin contract: one hook per component kind. These docstrings and ``KEYWORDS`` are the
reference; docs/plugins.md renders its contract table from them.

Each hook receives ``register(name, factory, *, summary=None, aliases=(), extra=None)``. Names
are lowercase ``[a-z0-9_.-]+``; a factory is only called when its component is used, so a plugin
module should import heavy libraries (torch, timm) inside its factories, never at module level.
Users pass their own parameters as ``name:key=value,...``; zoo checks them against the factory's
signature. ``extra`` is a dict of JSON values cached with the registry (see
``zoo_register_architectures`` for the one key zoo reads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")

Register = Callable[..., None]


@hookspec
def zoo_register_architectures(register: Register) -> None:
    """Register architectures.

    Returns a ``torch.nn.Module`` mapping float ``[B, C, H, W]`` to logits ``[B, num_classes]``.
    A ``get_classifier()`` method (timm's convention) lets ``--init`` re-create the classifier
    for new classes, and ``--freeze-epochs`` freeze the rest. A ``default_image_size`` attribute
    on the factory, an ``(h, w)`` tuple, tells ``zoo info`` and ``zoo benchmark`` which input
    size to build it at, and caps the size a folder run without ``--image-size`` picks from its
    images; a ``layer_decay_groups(net, weight_decay, layer_decay)`` method gives
    ``--layer-decay`` its parameter groups (with ``lr_scale``). ``extra={"pretrained": [...]}``
    lists the architecture's pretrained weights, default first: dicts with ``tag``, ``hub_id``
    (a Hugging Face Hub repository in the timm layout), ``input_size``, ``mean``, ``std``,
    ``crop_pct``, ``interpolation``, ``num_classes``, ``license``.

    ``zoo probe`` reads a network's penultimate features ``[B, D]``, what its classifier reads:
    ``forward_head(forward_features(x), pre_logits=True)`` when it has both methods (timm's
    convention), else the input of the module ``get_classifier()`` returns, flattened (taken as
    that module is called; the classifier itself does not run). A network with neither cannot
    be probed. The network is built with the weights' own ``num_classes``, so that every tensor
    of them loads.
    """


@hookspec
def zoo_register_augmentations(register: Register) -> None:
    """Register training-batch augmentations.

    Returns a callable ``(images, targets) -> (images, targets)``: images float32
    ``[B, C, H, W]`` in ``[0, 1]`` on the training device, targets int64 ``[B]`` or float soft
    labels ``[B, K]``. Randomness is drawn per sample from torch's generator for that device. A
    geometric one may provide ``affine_matrices(n, height, width, device)`` and ``fill`` to be
    fused with its neighbours into one warp (``zoo.data.augment``).
    """


@hookspec
def zoo_register_losses(register: Register) -> None:
    """Register losses.

    Returns a callable ``(logits, targets) -> scalar tensor`` accepting int64 ``[B]`` and soft
    ``[B, K]`` targets, or raising a clear ``ValueError`` for soft targets it cannot use. On a
    multi-label run the targets are label vectors ``[B, K]`` (a factory that declares
    ``multi_label`` is told so).
    """


@hookspec
def zoo_register_datasets(register: Register) -> None:
    """Register datasets (data sources).

    Returns a ``zoo.data.DataSplits``: each split an in-memory ``zoo.data.ImageTensors``, a
    map-style dataset of ``(uint8 [C, H, W], label)`` items (None for an unreadable one), or an
    iterable stream of such items with a defined epoch length (see ``SPLIT_EXPOSES``). A label
    is a class index, or for a multi-label source a label set: a list of class indices per
    item (an ``ImageTensors`` holds a ``{0, 1}`` matrix ``[N, K]`` instead of int64 ``[N]``).

    Beyond its name, a source says which ``--data`` strings it reads, how it proposes an image
    size and which split ``zoo eval --data`` judges by default, with the ``data_source``
    decorator below (``DATA_SOURCE`` lists the fields). zoo never names a source in its engine:
    a folder, a table, a Hugging Face dataset and WebDataset shards are four sources alike.
    """


@hookspec
def zoo_register_optimizers(register: Register) -> None:
    """Register optimizers.

    Returns a ``torch.optim.Optimizer``.
    """


@hookspec
def zoo_register_schedulers(register: Register) -> None:
    """Register learning-rate schedulers.

    Returns a ``torch.optim.lr_scheduler.LRScheduler`` stepped after every optimizer step, or a
    ``ReduceLROnPlateau`` stepped once per epoch with the monitored metric. Its
    ``state_dict()`` holds only numbers, strings, lists, dicts and tensors (stored as JSON).
    """


@hookspec
def zoo_register_callbacks(register: Register) -> None:
    """Register training callbacks.

    Returns a ``zoo.train.Callback``: ``on_fit_start(run)``, ``on_epoch_end(run, record)``
    (returning a reason to stop, or None), ``on_fit_end(run, summary)``, and ``state_dict()`` /
    ``load_state_dict(state)`` (numbers, strings, lists, dicts and tensors), saved with every
    epoch so that ``--resume`` restores it. Events run on rank 0 only.
    """


HOOKS: dict[str, str] = {
    "architecture": "zoo_register_architectures",
    "augmentation": "zoo_register_augmentations",
    "loss": "zoo_register_losses",
    "dataset": "zoo_register_datasets",
    "optimizer": "zoo_register_optimizers",
    "scheduler": "zoo_register_schedulers",
    "callback": "zoo_register_callbacks",
}
"""Component kind -> the hook that registers it."""


@dataclass(frozen=True)
class Keyword:
    """A keyword zoo itself passes to a kind's factories; users cannot set it."""

    name: str
    doc: str
    always: bool = True  # else: passed only to factories that declare it


KEYWORDS: dict[str, tuple[Keyword, ...]] = {
    "architecture": (
        Keyword("num_classes", "classes to predict (int)"),
        Keyword("in_chans", "input channels (int)"),
        Keyword("image_size", "input size, an int or an `(h, w)` tuple"),
    ),
    "augmentation": (
        Keyword("num_classes", "classes, for augmentations that make soft labels", always=False),
    ),
    "loss": (
        Keyword("num_classes", "classes (int)", always=False),
        Keyword(
            "weight",
            "class weights, float `[K]` from `--class-weights` (multi-label runs: each class's "
            "positive weight), or None",
            False,
        ),
        Keyword(
            "multi_label",
            "True on a multi-label run: targets are label vectors `[B, K]` in {0, 1} (mixed by "
            "mixup and cutmix)",
            False,
        ),
    ),
    "dataset": (
        Keyword("image_size", "`(h, w)`, or None for the dataset's own default"),
        Keyword("seed", "for any random split"),
        Keyword("val_fraction", "held out when the data has no validation split of its own"),
        Keyword("download", "`--download`: fetching missing files is allowed", always=False),
    ),
    "optimizer": (
        Keyword("params", "parameter groups, each with its own `weight_decay`"),
        Keyword("lr", "the peak learning rate"),
    ),
    "scheduler": (
        Keyword("optimizer", "the optimizer to schedule"),
        Keyword("epochs", "planned epochs"),
        Keyword("steps_per_epoch", "optimizer steps per epoch"),
        Keyword("monitor_mode", '`"min"` or `"max"`: the direction of `--monitor`', False),
    ),
    "callback": (),
}
"""Per kind, the keywords zoo passes to factories, beside the user's parameters."""


@dataclass(frozen=True)
class DataSource:
    """How a dataset factory reads ``--data`` beyond ``NAME[:k=v,...]`` (the fields of
    ``data_source``; a factory without them is read by its name alone)."""

    location: str | None = None
    suffixes: tuple[str, ...] = ()
    folders: bool = False
    image_size: Callable[[dict[str, Any], tuple[int, int]], tuple[int, int] | None] | None = None
    default_split: Callable[[dict[str, Any]], str] | None = None
    path_params: tuple[str, ...] = field(default=())
    processes: Callable[[dict[str, Any]], int | None] | None = None
    stamp: Callable[[dict[str, Any]], str | None] | None = None


DATA_SOURCE: dict[str, str] = {
    "location": "the factory parameter that receives `LOCATION` in `--data NAME:LOCATION[:k=v]` "
    "(`hf:ORG/NAME`, `wds:URL`) and a claimed bare path; a local location is made absolute",
    "suffixes": "file suffixes whose bare `--data PATH` this source reads (`.csv`, `.parquet`); "
    "two sources claiming one suffix make the path ambiguous (name one: `--data NAME:PATH`)",
    "folders": "`True`: this source reads a bare `--data PATH` that no suffix claims (a folder, or "
    "a path that does not exist, which it then reports)",
    "image_size": "`(params, cap) -> (h, w) | None`: the size a run without `--image-size` "
    "trains at (`params`: the user's parameters, the location included; `cap`: the "
    "architecture's default input size, else 224x224), recorded in the run's config",
    "default_split": "`(params) -> 'val' | 'test' | 'all'`: the split `zoo eval --data` judges "
    "without `--split` (default `val`); `all` holds nothing out",
    "path_params": "parameters holding local paths, made absolute where the command line is "
    "read (`root` always is)",
    "processes": "`(params) -> int | None`: the most processes the source can feed (a stream's "
    "training shards), checked before `--nproc N` starts any; None: no limit",
    "stamp": "`(params) -> str | None`: a short text, cheap to make, that changes whenever what "
    "the source reads changes (its files' names, sizes and modification times, say); None, or "
    "no `stamp`: it cannot tell without reading the data. `zoo probe` finds the features of "
    "data it has seen by it, without decoding an image",
}
"""The fields of ``data_source``: the data-source protocol beside the factory's signature."""

SPLIT_EXPOSES: dict[str, str] = {
    "labels": "every item's label, in item order (class indices, or label sets: lists of class "
    "indices): `--balanced`, `--class-weights auto` and distributed sampling read it",
    "paths": "the file (or `name#index` for a record) each item came from, for `zoo eval`'s "
    "per-image outputs",
    "unreadable()": "the items skipped as unreadable so far (counted in `summary.json`)",
    "decoded": "a shared-memory int64 tensor whose sum counts the images decoded rather than read "
    "from the decoded cache (the `decoded_images` of `metrics.jsonl`)",
    "set_epoch(epoch)": "an iterable stream (`torch.utils.data.IterableDataset`): called before "
    "every epoch, so the order is a function of `(seed, epoch)` and `--resume` at an epoch "
    "boundary reads what an uninterrupted run would; its `len()` is the epoch length in items "
    "over all processes, and each process and loader worker reads its own share",
    "channels": "a factory parameter `channels` (1 or 3), when declared, is set by `zoo eval` "
    "to the model's input channels unless given",
}
"""What a split may expose beyond its items; every one is optional."""

_Factory = TypeVar("_Factory", bound=Callable[..., Any])


def data_source(
    *,
    location: str | None = None,
    suffixes: tuple[str, ...] = (),
    folders: bool = False,
    image_size: Callable[[dict[str, Any], tuple[int, int]], tuple[int, int] | None] | None = None,
    default_split: Callable[[dict[str, Any]], str] | None = None,
    path_params: tuple[str, ...] = (),
    processes: Callable[[dict[str, Any]], int | None] | None = None,
    stamp: Callable[[dict[str, Any]], str | None] | None = None,
) -> Callable[[_Factory], _Factory]:
    """Mark a dataset factory as a data source (``DATA_SOURCE`` says what each field does)::

        @data_source(location="file", suffixes=(".tfrecord",))
        def tfrecord(image_size, seed, val_fraction, file: str) -> DataSplits: ...

    ``--data train.tfrecord`` and ``--data tfrecord:train.tfrecord`` then both read it.
    """
    source = DataSource(
        location,
        tuple(s.lower() for s in suffixes),
        folders,
        image_size,
        default_split,
        tuple(path_params),
        processes,
        stamp,
    )

    def mark(factory: _Factory) -> _Factory:
        factory.data_source = source  # type: ignore[attr-defined]
        return factory

    return mark
