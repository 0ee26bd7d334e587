"""The plugin contract: one hook per component kind.

Each hook receives ``register(name, factory, *, summary=None, aliases=())``. Names are lowercase
``[a-z0-9_.-]+``; a factory is only called when its component is used, so a plugin module should
import heavy libraries (torch, timm) inside its factories, never at module level.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")

Register = Callable[..., None]


@hookspec
def zoo_register_architectures(register: Register) -> None:
    """Register architectures.

    Factory keywords: ``num_classes``, ``in_chans``, ``image_size`` (int or ``(h, w)``) and the
    user's parameters. Returns a ``torch.nn.Module`` mapping float ``[B, C, H, W]`` to logits
    ``[B, num_classes]``.
    """


@hookspec
def zoo_register_augmentations(register: Register) -> None:
    """Register training-batch augmentations.

    Factory keywords: the user's parameters, plus ``num_classes`` if the factory declares it.
    Returns a callable ``(images, targets) -> (images, targets)``: images float32 ``[B, C, H, W]``
    in ``[0, 1]`` on the training device, targets int64 ``[B]`` or float soft labels ``[B, K]``.
    Randomness is drawn per sample from torch's generator for that device.
    """


@hookspec
def zoo_register_losses(register: Register) -> None:
    """Register losses.

    Factory keywords: the user's parameters, plus ``num_classes`` and ``weight`` (class weights,
    float ``[K]`` or None) if the factory declares them. Returns a callable
    ``(logits, targets) -> scalar tensor`` accepting int64 ``[B]`` and soft ``[B, K]`` targets, or
    raising a clear ``ValueError`` for soft targets it cannot use.
    """


@hookspec
def zoo_register_datasets(register: Register) -> None:
    """Register datasets.

    Factory keywords: ``image_size`` (``(h, w)``, or None for the dataset's own default),
    ``seed`` (for any random split), ``val_fraction`` (used when the data has no validation split
    of its own) and the user's parameters. Returns a ``zoo.data.splits.DataSplits``.
    """


@hookspec
def zoo_register_optimizers(register: Register) -> None:
    """Register optimizers.

    Factory arguments: ``params`` (parameter groups, each carrying its own ``weight_decay``),
    ``lr`` and the user's parameters. Returns a ``torch.optim.Optimizer``.
    """


@hookspec
def zoo_register_schedulers(register: Register) -> None:
    """Register learning-rate schedulers.

    Factory arguments: ``optimizer``, ``epochs``, ``steps_per_epoch`` and the user's parameters.
    Returns a ``torch.optim.lr_scheduler.LRScheduler`` stepped after every optimizer step, or a
    ``ReduceLROnPlateau`` stepped once per epoch with the monitored metric.
    """


HOOKS: dict[str, str] = {
    "architecture": "zoo_register_architectures",
    "augmentation": "zoo_register_augmentations",
    "loss": "zoo_register_losses",
    "dataset": "zoo_register_datasets",
    "optimizer": "zoo_register_optimizers",
    "scheduler": "zoo_register_schedulers",
}
"""Component kind -> the hook that registers it."""
