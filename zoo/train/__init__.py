"""The training engine: configuration, the loop, its events and callbacks, checkpointing,
distributed coordination and what a run leaves on disk.

``from zoo.train import Trainer, TrainConfig`` trains from Python; importing this package
does not import torch until ``Trainer`` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoo.train.config import TrainConfig
    from zoo.train.events import Callback, Run
    from zoo.train.trainer import RunResult, Trainer

_LAZY = {
    "TrainConfig": "zoo.train.config",
    "Trainer": "zoo.train.trainer",
    "RunResult": "zoo.train.trainer",
    "Callback": "zoo.train.events",
    "Run": "zoo.train.events",
}

__all__ = ["Callback", "Run", "RunResult", "TrainConfig", "Trainer"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo.train' has no attribute {name!r}")
