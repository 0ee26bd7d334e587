"""zoo: a plugin-based model zoo and training framework for image classification.

``import zoo`` is cheap: it imports pluggy, not torch. Plugins use ``zoo.hookimpl``; the Python
API (``create_model``, ``build``, ``list_components``, ``load``, ``probe``) imports torch when
first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError
from zoo.plugins.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

if TYPE_CHECKING:
    from zoo.api import build, create_model, list_components, load, probe
    from zoo.data.splits import DataSplits, ImageTensors

_LAZY = {
    "build": "zoo.api",
    "create_model": "zoo.api",
    "list_components": "zoo.api",
    "load": "zoo.api",
    "probe": "zoo.api",
    "DataSplits": "zoo.data.splits",
    "ImageTensors": "zoo.data.splits",
}

__all__ = [
    "DataSplits",
    "ImageTensors",
    "ZooError",
    "__version__",
    "build",
    "create_model",
    "hookimpl",
    "hookspec",
    "list_components",
    "load",
    "probe",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
