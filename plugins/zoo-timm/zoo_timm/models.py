"""Building timm models for zoo: sizes, ``img_size``, and timm's keyword errors made readable."""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

from zoo.errors import ZooError, did_you_mean

# create_model keywords that load weights (downloads of any format, or torch.load on a pickle
# file): zoo fetches safetensors weights itself (--pretrained, --init).
_WEIGHT_SOURCES = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path")
# What zoo keeps of a pretrained config (timm's PretrainedCfg fields) for each tag.
_TAG_FIELDS = (
    "input_size",
    "test_input_size",
    "crop_pct",
    "crop_mode",
    "interpolation",
    "mean",
    "std",
    "num_classes",
    "license",
)
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


def pretrained_tags() -> dict[str, list[dict[str, Any]]]:
    """Every model's pretrained tags as JSON, the default tag first: the Hub repository and
    the input the weights were trained on (zoo caches this table; about 0.1 s to build)."""
    import timm
    from timm.models import get_pretrained_cfg

    found: dict[str, list[dict[str, Any]]] = {}
    for full in timm.list_pretrained():
        model, _, tag = full.partition(".")
        cfg = get_pretrained_cfg(full)
        if cfg is None or not tag:
            continue
        entry: dict[str, Any] = {"tag": tag, "hub_id": cfg.hf_hub_id or None}
        if cfg.hf_hub_filename:
            entry["hub_filename"] = cfg.hf_hub_filename
        for name in _TAG_FIELDS:
            value = getattr(cfg, name, None)
            if value is not None:
                entry[name] = list(value) if isinstance(value, tuple) else value
        found.setdefault(model, []).append(entry)
    for model, entries in found.items():
        default = get_pretrained_cfg(model)
        first = default.tag if default is not None else None
        entries.sort(key=lambda e: e["tag"] != first)  # stable: timm's order otherwise
    return found


def layer_decay_groups(
    model_name: str, net: Any, weight_decay: float, layer_decay: float
) -> list[dict[str, Any]]:
    """timm's layer-decay parameter groups (its ``group_matcher``, else its automatic grouping).
    Its weight-decay rule is zoo's (none for 1-d parameters, which biases and norms are) plus the
    model's own ``no_weight_decay()`` (position embeddings, class tokens)."""
    import logging

    from timm.optim import param_groups_layer_decay

    skip = net.no_weight_decay() if callable(getattr(net, "no_weight_decay", None)) else ()
    logger = logging.getLogger("timm.optim._param_groups")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its warning for one group becomes zoo's error below
    try:
        groups = param_groups_layer_decay(
            net, weight_decay=weight_decay, no_weight_decay_list=skip, layer_decay=layer_decay
        )
    finally:
        logger.setLevel(level)
    if len({g["lr_scale"] for g in groups}) < 2:
        raise ZooError(
            f"architecture 'timm:{model_name}': timm finds no layers in it to decay, so "
            "--layer-decay cannot apply"
        )
    return groups


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
                f"{label}: {key} is not a model keyword in zoo; start from timm's weights with "
                "--pretrained (zoo.create_model(..., pretrained=True)), or from others with --init"
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
