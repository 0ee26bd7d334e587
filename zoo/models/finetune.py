"""``--init`` and ``--pretrained``: start a run from existing weights, adapting the classifier
and first conv.

SOURCE is a ``.safetensors`` file (zoo weights, a zoo training checkpoint or plain tensors), a
zoo run directory, a folder in the Hugging Face/timm layout (``config.json`` +
``model.safetensors``), or a Hub repository in that layout (``hf-hub:ORG/NAME[@REVISION]``,
fetched by ``zoo.models.hub``). ``--pretrained`` is ``--init`` from the Hub repository of the
architecture's pretrained tag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.models.weights import load_tensors, read_header


def create_network(
    name: str,
    *,
    pretrained: bool = False,
    num_classes: int = 1000,
    in_chans: int = 3,
    image_size: int | tuple[int, int] | None = None,
    **params: Any,
) -> nn.Module:
    """``zoo.create_model``'s network (its docstring is the reference), for the packages below
    the public surface (``zoo probe`` builds its candidates so)."""
    from zoo.plugins.build import get_registry
    from zoo.plugins.components import resolve

    resolved = resolve("architecture", name, **params)
    weights = get_registry().find_pretrained(resolved.spec.ref) if pretrained else None
    if image_size is None:
        size = weights.config.get("input_size") if weights is not None else None
        default = getattr(resolved.factory, "default_image_size", None)
        image_size = tuple(size[1:]) if size else tuple(default) if default else 224
    net = resolved.build(num_classes=num_classes, in_chans=in_chans, image_size=image_size)
    if weights is not None:
        from zoo.models.hub import pretrained_source

        source = pretrained_source(weights)
        initialize(net, source, num_classes, in_chans, f"pretrained {weights.name}", source)
    return net


def init_file(source: str | Path, option: str = "--init") -> Path:
    """The weights file behind an ``--init`` source (errors start with ``option``)."""
    from zoo.models.loading import weights_path

    try:
        return weights_path(source)
    except ZooError as exc:
        raise ZooError(f"{option}: {exc}") from None


def source_normalization(source: str | Path, in_chans: int) -> tuple[tuple[float, ...], ...] | None:
    """The mean and std the ``--init`` weights were trained with, for ``in_chans`` channels:
    from zoo's metadata, or a timm/Hugging Face ``config.json``; None when neither says.

    Fine-tuned weights keep working best on inputs normalized as in their first training (an
    ImageNet model expects ImageNet statistics), not by the new dataset's statistics.
    """
    from zoo.models import hfconfig

    path = init_file(source)
    info = read_header(path).info
    if info is not None:
        return hfconfig.per_channel(info.mean, in_chans), hfconfig.per_channel(info.std, in_chans)
    config = hfconfig.read(path.parent)
    return hfconfig.normalization(config, in_chans) if config is not None else None


def architecture_warning(path: Path, wanted: str, shown: str, option: str = "--init") -> str | None:
    """One line for after the weights at ``path`` were loaded, when they say they were trained
    as another architecture than ``wanted`` (a qualified name), by zoo's metadata or a
    timm/Hugging Face ``config.json``, or as one that no installed plugin provides; None when
    they agree or say nothing. Not an
    error: the architecture is the one ``--arch`` names, and its tensors are checked strictly
    (``zoo predict``, which has no ``--arch``, refuses what it cannot build)."""
    from zoo.models import hfconfig
    from zoo.plugins.build import get_registry

    info = read_header(path).info
    config = hfconfig.read(path.parent) if info is None else None
    if info is None and config is None:
        return None
    where = f"{shown}'s {hfconfig.CONFIG}" if info is None else f"{shown}'s metadata"
    try:
        if info is not None:
            named = get_registry().resolve("architecture", info.arch).qualified
        else:
            named = hfconfig.architecture(config, path.parent)  # type: ignore[arg-type]
    except ZooError:
        named = info.arch if info is not None else str(config["architecture"])  # type: ignore[index]
        return (
            f"warning: {option}: {where} names architecture {named!r}, which no installed "
            f"plugin provides; its tensors fit {wanted} (--arch) and are loaded"
        )
    if named == wanted:
        return None
    return (
        f"warning: {option}: {where} names {named}, not {wanted} (--arch); its tensors fit it "
        "and are loaded"
    )


def classifier_keys(net: nn.Module) -> set[str]:
    """State-dict keys of the final classifier(s), by timm's conventions: ``get_classifier()``
    (one module, or several for models with two heads) and ``pretrained_cfg["classifier"]``."""
    heads: list[nn.Module] = []
    get = getattr(net, "get_classifier", None)
    found = get() if callable(get) else None
    for head in found if isinstance(found, (tuple, list)) else [found]:
        if isinstance(head, nn.Module):
            heads.append(head)
    cfg = getattr(net, "pretrained_cfg", None)
    names = cfg.get("classifier") if isinstance(cfg, dict) else None
    modules = dict(net.named_modules())
    for name in [names] if isinstance(names, str) else names or []:
        if isinstance(name, str) and name in modules:
            heads.append(modules[name])
    keys = set()
    for prefix, module in modules.items():
        if any(module is head for head in heads):
            keys |= {f"{prefix}.{k}" if prefix else k for k in module.state_dict()}
    return keys


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Convert a conv weight's input channels: sum to one channel, or repeat and rescale."""
    src = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // src)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (src / in_chans)


def initialize(
    net: nn.Module,
    source: str | Path,
    num_classes: int,
    in_chans: int,
    option: str = "--init",
    label: str | None = None,
) -> str:
    """Load weights from ``source`` into ``net``; returns a one-line account of what changed
    (naming the source as ``label`` when given: a Hub repository rather than its cache path)."""
    from zoo.models.hub import is_hub_ref

    path = init_file(source, option)
    shown = label if label is not None else str(source) if is_hub_ref(source) else _shown(path)
    header = read_header(path)
    prefix = "model." if header.state is not None else ""
    state = load_tensors(path, prefix)
    target = net.state_dict()
    head = classifier_keys(net)
    notes = []
    skipped_head = sorted(k for k in head if k in state and state[k].shape != target[k].shape)
    if skipped_head:
        old = state[skipped_head[0]].shape[0]
        notes.append(f"classifier re-created for {num_classes} classes (was {old})")
        for k in skipped_head:
            state[k] = target[k]
    for key, value in target.items():
        src = state.get(key)
        if (
            src is not None
            and src.ndim == 4
            and value.ndim == 4
            and src.shape[1] != in_chans
            and value.shape[1] == in_chans
            and src.shape[0] == value.shape[0]
            and src.shape[2:] == value.shape[2:]
        ):
            notes.append(
                f"first conv {key} adapted from {src.shape[1]} to {in_chans} input channels"
            )
            state[key] = adapt_input_conv(src, in_chans)
            break
    from zoo.models.loading import check_state

    try:
        check_state(net, state, Path(shown))
    except ZooError as exc:
        raise ZooError(f"{option}: {exc}{_folder_hint(path)}") from None
    net.load_state_dict(state)
    detail = "; ".join(notes) if notes else "all tensors matched"
    return f"init: loaded {len(state)} tensors from {shown} ({detail})"


def _shown(path: Path) -> str:
    """A path as short as it can be said: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _folder_hint(weights: Path) -> str:
    """`` (its config.json names resnet50)``, to say what a timm/HF folder holds."""
    from zoo.models import hfconfig

    try:
        config = hfconfig.read(weights.parent)
    except ZooError:
        return ""
    return f" ({hfconfig.CONFIG} there names {config['architecture']})" if config else ""
