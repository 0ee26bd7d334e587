"""The Python API beside the CLI: ``create_model``, ``list_components``, ``load``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.plugins.registry import Component, normalize_kind

if TYPE_CHECKING:
    import torch


def create_model(
    name: str,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    image_size: int | tuple[int, int] = 224,
    **params: Any,
) -> torch.nn.Module:
    """Build an architecture by name (``resnet50``, ``timm:resnet50``, ``simplecnn:hidden=64``)
    with fresh weights; extra keywords are the architecture's own parameters."""
    from zoo.plugins.components import resolve

    resolved = resolve("architecture", name, **params)
    return resolved.build(num_classes=num_classes, in_chans=in_chans, image_size=image_size)


def build(kind: str, spec: str, **keywords: Any) -> Any:
    """Build any component from a spec: ``zoo.build("augmentation", "mixup:alpha=0.4",
    num_classes=10)``. ``keywords`` are the ones zoo itself passes to that kind's factories
    (see docs/plugins.md); the user's parameters go in the spec."""
    from zoo.plugins.components import resolve

    return resolve(normalize_kind(kind), spec).build(**keywords)


def list_components(kind: str | None = None, pattern: str | None = None) -> list[Component]:
    """Registered components (of one kind, optionally filtered by a glob such as ``res*``)."""
    from zoo.plugins.build import get_registry

    return get_registry().components(normalize_kind(kind) if kind else None, pattern)


def load(path: str | Path, *, device: str = "cpu") -> Any:
    """Load a run directory, a weights file or a timm/Hugging Face folder (``config.json`` +
    ``model.safetensors``): the model in eval mode, ready for inference, with its class names,
    image size and normalization (a ``zoo.models.inference.LoadedModel``)."""
    from zoo.models.loading import load as load_model

    return load_model(path, device=device)
