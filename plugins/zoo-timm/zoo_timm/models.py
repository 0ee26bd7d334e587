"""Building timm models for zoo: sizes, ``img_size``, and timm's keyword errors made readable."""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

from zoo.errors import ZooError, did_you_mean

# create_model keywords that load weights (downloads, or torch.load on a pickle file): zoo
# starts from local safetensors weights through --init instead.
_WEIGHT_SOURCES = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path")
_UNEXPECTED = re.compile(r"^(?:(\w+)\.)?\w+\(\) got an unexpected keyword argument '(\w+)'")


def size_pair(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def _pretrained_cfg(model_name: str) -> Any:
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(model_name, allow_unregistered=True)


def default_input_size(model_name: str) -> tuple[int, int]:
    """The ``(h, w)`` of timm's default pretrained config for this model (224x224 without one)."""
    cfg = _pretrained_cfg(model_name)
    return size_pair(tuple(cfg.input_size[1:])) if cfg is not None else (224, 224)


def needs_img_size(model_name: str) -> bool:
    """Whether the model takes ``img_size``: timm's builder passes it exactly to the models whose
    pretrained config says ``fixed_input_size`` (position embeddings, window sizes...)."""
    cfg = _pretrained_cfg(model_name)
    return bool(cfg is not None and cfg.fixed_input_size)


def create(
    model_name: str,
    num_classes: int,
    in_chans: int,
    image_size: int | tuple[int, int],
    params: dict[str, Any],
) -> Any:
    """``timm.create_model`` with zoo's keywords; bad user keywords become one-line errors."""
    import timm

    label = f"architecture 'timm:{model_name}'"
    for key in _WEIGHT_SOURCES:
        if key in params:
            raise ZooError(
                f"{label}: {key} is not supported; zoo never downloads weights, start from a "
                "local folder or run with --init instead"
            )
    kwargs = dict(params)
    if "img_size" not in kwargs and needs_img_size(model_name):
        kwargs["img_size"] = size_pair(image_size)
    try:
        return timm.create_model(
            model_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    except TypeError as exc:
        found = _UNEXPECTED.match(str(exc))
        if found is None or found.group(2) not in params:
            raise
        raise ZooError(
            f"{label}: unknown parameter {found.group(2)!r}"
            + _accepted_hint(model_name, found.group(1), found.group(2))
        ) from None


def _accepted_hint(model_name: str, class_name: str | None, key: str) -> str:
    """``; did you mean ...? (ResNet takes: ...)`` from the model class's signature, when found."""
    from timm.models import model_entrypoint

    module = sys.modules.get(model_entrypoint(model_name).__module__)
    cls = getattr(module, class_name, None) if class_name else None
    if not inspect.isclass(cls):
        return ""
    skip = {"self", "num_classes", "in_chans"}
    names = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in skip
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    return f"{did_you_mean(key, names)} ({class_name} takes: {', '.join(names)})"
