"""Class activation maps (Grad-CAM) through pytorch-grad-cam (``pip install 'zoo[explain]'``).

Grad-CAM weighs a layer's feature maps by the gradient of a class score, so the layer must keep
a spatial layout. zoo picks it automatically:

- timm networks name their stages in ``feature_info``: the last stage whose output is larger
  than 1x1 (channels-last outputs, as in Swin, are transposed; a vision transformer's tokens
  are laid back on their patch grid, at the last block's ``norm1`` as pytorch-grad-cam advises);
- other networks: the last module, in forward order, whose output is a ``[B, C, H, W]`` map
  larger than 1x1, unless token layers follow it (then it is only a patch stem).

``--cam-layer NAME`` (a name from ``net.named_modules()``) chooses the layer by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.errors import ZooError, did_you_mean, shown

Reshape = Callable[[torch.Tensor], torch.Tensor] | None


@dataclass
class Target:
    """The layer Grad-CAM reads, and how its output becomes ``[B, C, H, W]``."""

    name: str
    module: nn.Module
    reshape: Reshape = None


def require() -> None:
    """A one-line error when pytorch-grad-cam is not installed (it is optional)."""
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        raise ZooError(
            "--cam needs pytorch-grad-cam, which is not installed: pip install 'zoo[explain]'"
        ) from None


def _probe(net: nn.Module, sample: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """``(module name, output shape)`` of every submodule, in the order their forward ends."""
    seen: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, module in net.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _i: Any, output: Any, name: str = name) -> None:
            if isinstance(output, torch.Tensor):
                seen.append((name, tuple(output.shape)))

        hooks.append(module.register_forward_hook(hook))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(sample)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return seen


def _spatial(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] * shape[3] > 1


def _token_grid(net: nn.Module) -> tuple[int, tuple[int, int]] | None:
    """``(prefix tokens, patch grid)`` of a timm vision transformer."""
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    prefix = getattr(net, "num_prefix_tokens", None)
    if grid is None or prefix is None:
        return None
    return int(prefix), (int(grid[0]), int(grid[1]))


def _tokens_to_map(prefix: int, grid: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:, :]
        return patches.reshape(tokens.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2)

    return reshape


def _channels_last_to_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _layout(net: nn.Module, name: str, shape: tuple[int, ...], channels: int | None) -> Any:
    """How the output of layer ``name`` becomes a map: ``None`` (already ``[B, C, H, W]``), a
    reshape function, or ``False`` when it has no usable spatial layout."""
    if len(shape) == 4:
        if channels is not None and shape[1] != channels and shape[3] == channels:
            return _channels_last_to_first
        return None
    if len(shape) == 3:
        tokens = _token_grid(net)
        if tokens is not None and shape[1] == tokens[0] + tokens[1][0] * tokens[1][1]:
            return _tokens_to_map(*tokens)
    return False


def _candidates(net: nn.Module, seen: list[tuple[str, tuple[int, ...]]]) -> str:
    """The last few layers with a map or token output, for error messages."""
    names = []
    for name, shape in seen:
        usable = _spatial(shape) or (
            len(shape) == 3 and _layout(net, name, shape, None) is not False
        )
        if usable and name not in names:
            names.append(name)
    if not names:
        return "none has a spatial output"
    shown = names[-8:]
    return ("..., " if len(names) > 8 else "") + ", ".join(shown)


def find_target(net: nn.Module, sample: torch.Tensor, name: str | None = None) -> Target:
    """The layer for Grad-CAM (see the module docstring); ``sample`` is one input batch."""
    seen = _probe(net, sample)
    shapes = dict(seen)
    modules = dict(net.named_modules())
    arch = type(net).__name__
    if name is not None:
        if name not in modules or not name:
            raise ZooError(
                f"--cam-layer: {arch} has no layer {shown(name)}"
                f"{did_you_mean(name, list(modules)[1:])}"
                f"; layers with maps: {_candidates(net, seen)}"
            )
        if name not in shapes:
            raise ZooError(
                f"--cam-layer: layer {shown(name)} of {arch} returns no tensor in forward"
            )
        layout = _layout(net, name, shapes[name], None)
        if layout is False:
            raise ZooError(
                f"--cam-layer: layer {shown(name)} of {arch} gives {list(shapes[name])}, not a "
                f"spatial map; layers with maps: {_candidates(net, seen)}"
            )
        return Target(name, modules[name], layout)

    info = getattr(net, "feature_info", None)
    stages = [(s.get("module"), s.get("num_chs")) for s in info or [] if isinstance(s, dict)]
    if stages:
        fallback = None
        for stage, channels in reversed(stages):
            if stage not in shapes:
                continue
            shape = shapes[stage]
            layout = _layout(net, stage, shape, channels)
            if layout is False:
                continue
            if len(shape) == 3:  # transformer tokens: the last block's attention input
                norm = f"{stage}.norm1"
                chosen = norm if norm in shapes else stage
                return Target(chosen, modules[chosen], layout)
            h, w = shape[1:3] if layout is _channels_last_to_first else shape[2:]
            target = Target(stage, modules[stage], layout)
            if h * w > 1:
                return target
            fallback = fallback or target
        if fallback is not None:
            return fallback  # every stage is 1x1 at this input size: the last one
    last = None
    for n, (_, shape) in enumerate(seen):
        if _spatial(shape):
            last = n
    if last is not None:
        tokens_after = any(len(shape) == 3 and shape[1] > 1 for _, shape in seen[last + 1 :])
        if not tokens_after:
            layer = seen[last][0]
            return Target(layer, modules[layer], None)
    raise ZooError(
        f"--cam: {arch} has no convolutional stage to map; choose a layer with "
        f"--cam-layer NAME (candidates: {_candidates(net, seen)})"
    )


def activation_maps(
    net: nn.Module, inputs: torch.Tensor, classes: list[int], target: Target
) -> np.ndarray:
    """Grad-CAM maps ``[N, H, W]`` in ``[0, 1]`` at the input size, for class ``classes[i]`` of
    input ``i`` (normalized, on the network's device)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = net.training
    try:
        with (
            torch.enable_grad(),
            GradCAM(
                model=net, target_layers=[target.module], reshape_transform=target.reshape
            ) as cam,
        ):
            maps = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(c) for c in classes])
    finally:
        net.train(was_training)
    return np.asarray(maps, dtype=np.float32)


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 picture: the map in the jet colours blended over the image
    (uint8 ``[C, H, W]``, greyscale or RGB)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
    rgb = rgb.transpose(1, 2, 0).astype(np.float32) / 255
    return show_cam_on_image(rgb, mask, use_rgb=True, image_weight=0.5)
