"""The Hugging Face / timm folder layout: ``config.json`` beside ``model.safetensors``.

Writing: every run directory gets a ``config.json`` in timm's format (architecture, num_classes,
label_names, model_args, pretrained_cfg with input size and normalization), so a run of a timm
architecture is also a timm folder: ``timm.create_model("local-dir:RUN", pretrained=True)``
rebuilds the trained model. The tensor names of ``model.safetensors`` are already the network's
own state-dict keys.

Reading: a folder written by timm (``save_for_hf``) or copied from the Hub has weights without
zoo's metadata; its ``config.json`` says which architecture to build and how to feed it.

Only timm's conventions are used here (a network's ``pretrained_cfg`` and ``num_features``
attributes); timm itself is never imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, shown
from zoo.files.atomic import atomic_write
from zoo.files.reading import read_text, why
from zoo.models.weights import ModelInfo

CONFIG = "config.json"
# Hugging Face's problem_type of a multi-label classifier (sigmoid per class).
MULTI_LABEL = "multi_label_classification"
# What zoo copies from a timm network's own pretrained_cfg; every other input field is zoo's.
_FROM_NETWORK = ("fixed_input_size", "first_conv", "classifier")
# Architecture keywords zoo passes itself, so they are not user parameters when reading.
_PROVIDED_ARGS = ("num_classes", "in_chans")
# timm's defaults for a pretrained_cfg without normalization (ImageNet statistics).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def hf_config(info: ModelInfo, net: Any) -> dict[str, Any]:
    """The ``config.json`` of a trained network, in timm's layout, plus zoo's qualified name."""
    name = info.arch.rpartition(":")[2]
    own = getattr(net, "pretrained_cfg", None)
    own = own if isinstance(own, dict) else {}
    channels, (height, width) = info.in_chans, info.image_size
    pretrained_cfg: dict[str, Any] = {k: own[k] for k in _FROM_NETWORK if k in own}
    pretrained_cfg.update(
        input_size=[channels, height, width],
        interpolation="bilinear",  # how zoo resizes, with no crop
        crop_pct=1.0,
        crop_mode="center",
        mean=list(info.mean),
        std=list(info.std),
        num_classes=info.num_classes,
    )
    model_args: dict[str, Any] = {
        "num_classes": info.num_classes,
        "in_chans": channels,
        **info.arch_params,
    }
    if pretrained_cfg.get("fixed_input_size") and "img_size" not in model_args:
        model_args["img_size"] = [height, width]
    config: dict[str, Any] = {"architecture": name, "num_classes": info.num_classes}
    num_features = getattr(net, "num_features", None)
    if isinstance(num_features, int):
        config["num_features"] = num_features
    config.update(
        label_names=list(info.classes),
        model_args=model_args,
        pretrained_cfg=pretrained_cfg,
        zoo={"arch": info.arch, "zoo_version": info.zoo_version, "epoch": info.epoch},
    )
    if info.thresholds is not None:  # multi-label: Hugging Face's name, and the thresholds
        config["problem_type"] = MULTI_LABEL
        config["thresholds"] = dict(zip(info.classes, info.thresholds, strict=True))
    return config


def encode(info: ModelInfo, net: Any) -> bytes:
    """The bytes of ``config.json``."""
    return (json.dumps(hf_config(info, net), indent=2) + "\n").encode()


def write(folder: Path, info: ModelInfo, net: Any) -> None:
    """Write ``folder/config.json`` atomically (beside the run's ``model.safetensors``)."""
    atomic_write(Path(folder) / CONFIG, encode(info, net))


def read(folder: Path) -> dict[str, Any] | None:
    """``folder/config.json`` as a dict, None when there is none; ZooError when unreadable."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(read_text(path))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ZooError(f"{path} is not readable JSON ({why(exc)})") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ZooError(f"{path} names no architecture; it is not a timm/Hugging Face config")
    return config


def model_info(config: dict[str, Any], source: Path) -> ModelInfo:
    """What zoo needs to rebuild and feed the model a ``config.json`` describes."""
    # timm's older single-dict layout keeps everything at the top level.
    pretrained = config.get("pretrained_cfg", config)
    pretrained = pretrained if isinstance(pretrained, dict) else {}
    model_args = config.get("model_args") or {}
    if config.get("num_classes", pretrained.get("num_classes")) is None:
        raise ZooError(f"{source} gives no num_classes")
    try:
        num_classes = int(config.get("num_classes", pretrained.get("num_classes")))
        input_size = list(pretrained.get("input_size") or [3, 224, 224])
        in_chans = int(model_args.get("in_chans", input_size[0]))
        size = model_args.get("img_size") or input_size[1:]
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ZooError(f"{source}: invalid num_classes or input size ({exc})") from None
    labels = config.get("label_names") or pretrained.get("label_names")
    classes = (
        [str(c) for c in labels]
        if isinstance(labels, list) and len(labels) == num_classes
        else [str(i) for i in range(num_classes)]
    )
    zoo_part = config.get("zoo") if isinstance(config.get("zoo"), dict) else {}
    multi = config.get("problem_type") == MULTI_LABEL
    thresholds = config.get("thresholds") if multi else None
    if multi:
        given = thresholds if isinstance(thresholds, dict) else {}
        try:
            thresholds = [float(given.get(c, 0.5)) for c in classes]
        except (TypeError, ValueError) as exc:
            raise ZooError(f"{source}: invalid thresholds ({exc})") from None
    return ModelInfo(
        arch=architecture(config, source),
        arch_params={k: v for k, v in model_args.items() if k not in _PROVIDED_ARGS},
        num_classes=num_classes,
        in_chans=in_chans,
        image_size=(height, width),
        classes=classes,
        mean=normalization(config, in_chans)[0],
        std=normalization(config, in_chans)[1],
        zoo_version=str(zoo_part.get("zoo_version", "")),
        epoch=zoo_part.get("epoch"),
        config={"task": "multi-label"} if multi else {},
        thresholds=thresholds,
    )


def normalization(config: dict[str, Any], in_chans: int) -> tuple[tuple[float, ...], ...]:
    """The per-channel mean and std a ``config.json``'s weights were trained with (ImageNet's
    when it says nothing, as timm assumes), for ``in_chans`` channels."""
    pretrained = config.get("pretrained_cfg", config)
    pretrained = pretrained if isinstance(pretrained, dict) else {}
    return (
        per_channel(pretrained.get("mean", _IMAGENET_MEAN), in_chans),
        per_channel(pretrained.get("std", _IMAGENET_STD), in_chans),
    )


def architecture(config: dict[str, Any], source: Path) -> str:
    """The installed component a config's architecture names: zoo's own qualified name when the
    folder is a zoo run, else timm's registry name, provided by the ``timm`` plugin (zoo-timm).
    ZooError (naming ``source``) when no installed plugin provides it."""
    from zoo.plugins.build import get_registry

    zoo_part = config.get("zoo") if isinstance(config.get("zoo"), dict) else {}
    name, qualified = config["architecture"], zoo_part.get("arch")
    registry = get_registry()
    candidates = [qualified] if qualified else [f"timm:{name}", name]
    for ref in candidates:
        try:
            return registry.resolve("architecture", ref).qualified
        except ZooError:
            continue
    raise ZooError(
        f"{source}: {CONFIG} names architecture {shown(qualified or name)}, which no installed "
        "plugin provides (timm's architectures come with zoo-timm)"
    )


def per_channel(values: Any, channels: int) -> tuple[float, ...]:
    """Normalization for ``channels`` channels: as given, one value repeated, or averaged."""
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == channels:
        return tuple(values)
    if len(values) == 1:
        return tuple(values * channels)
    return tuple([sum(values) / len(values)] * channels)
