"""zoo's own components: an ordinary plugin, declared under the ``zoo.plugins`` entry point in
pyproject.toml and loaded like any third-party one. Importing it does not import torch."""

from zoo.builtins.architectures import zoo_register_architectures
from zoo.builtins.augmentations import zoo_register_augmentations
from zoo.builtins.callbacks import zoo_register_callbacks
from zoo.builtins.datasets import zoo_register_datasets
from zoo.builtins.losses import zoo_register_losses
from zoo.builtins.optimizers import zoo_register_optimizers
from zoo.builtins.schedulers import zoo_register_schedulers

__all__ = [
    "zoo_register_architectures",
    "zoo_register_augmentations",
    "zoo_register_callbacks",
    "zoo_register_datasets",
    "zoo_register_losses",
    "zoo_register_optimizers",
    "zoo_register_schedulers",
]
