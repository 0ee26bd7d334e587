"""zoo-timm: timm's architectures, losses, optimizers, schedulers and augmentations in zoo.

Registered under the plugin name ``timm`` (qualified names ``timm:resnet50``). Importing this
module imports neither timm nor torch; the hooks import timm when the plugin is loaded, and the
factories build timm objects only when a component is used. See docs/timm.md for the names.
"""

from zoo.plugins.hookspecs import Register, hookimpl


@hookimpl
def zoo_register_architectures(register: Register) -> None:
    from zoo_timm.architectures import register_architectures

    register_architectures(register)


@hookimpl
def zoo_register_augmentations(register: Register) -> None:
    from zoo_timm.augmentations import register_augmentations

    register_augmentations(register)


@hookimpl
def zoo_register_losses(register: Register) -> None:
    from zoo_timm.losses import register_losses

    register_losses(register)


@hookimpl
def zoo_register_optimizers(register: Register) -> None:
    from zoo_timm.optimizers import register_optimizers

    register_optimizers(register)


@hookimpl
def zoo_register_schedulers(register: Register) -> None:
    from zoo_timm.schedulers import register_schedulers

    register_schedulers(register)
