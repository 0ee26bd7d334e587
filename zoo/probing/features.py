"""A pretrained backbone and its penultimate features.

The network is built and loaded exactly as ``zoo train --pretrained`` starts from it
(``zoo.create_model(..., pretrained=True)``: the first convolution adapted to the data's
channels), runs in inference mode, in zoo's precision and memory format for the device, on
inputs normalized as the weights were trained. Its features are what its classifier reads (the
contract in ``zoo_register_architectures``'s docstring): timm's
``forward_head(forward_features(x), pre_logits=True)`` when the network has both, else the input
of the module ``get_classifier()`` returns, flattened, caught before that module runs.

``extract_features`` is the one function that turns a split into features: the data path
(``make_batches``) and the forward pass meet there and nowhere else. It keeps each image's label
as the probe fits it: a class index, or for multi-label data a ``{0, 1}`` label vector (the
multi-label task's encoding of whatever form the split's batches carry label sets in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from zoo.models.inference import Normalizer
    from zoo.probing.candidates import Candidate

Features = Callable[["torch.Tensor"], "torch.Tensor"]


class _Caught(Exception):
    """Carries the classifier's input out of the forward pass, so the classifier never runs."""

    def __init__(self, tensor: torch.Tensor) -> None:
        super().__init__("penultimate features")
        self.tensor = tensor


def penultimate(net: nn.Module, label: str) -> Features:
    """``x -> [B, D]`` features: what the network's classifier reads. ZooError for a network
    that says neither way (no ``forward_features``/``forward_head``, no ``get_classifier()``)."""
    from torch import nn

    forward_features = getattr(net, "forward_features", None)
    forward_head = getattr(net, "forward_head", None)
    if callable(forward_features) and callable(forward_head):

        def timm_features(x: torch.Tensor) -> torch.Tensor:
            return forward_head(forward_features(x), pre_logits=True).flatten(1)

        return timm_features
    get = getattr(net, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, (tuple, list)):
        head = head[0]
    if not isinstance(head, nn.Module):
        raise ZooError(
            f"{label} gives no penultimate features: it has neither forward_features() and "
            "forward_head(pre_logits=True) (timm's convention) nor get_classifier()"
        )

    def catch(module: nn.Module, args: tuple[Any, ...]) -> None:
        raise _Caught(args[0])

    def classifier_input(x: torch.Tensor) -> torch.Tensor:
        handle = head.register_forward_pre_hook(catch)
        try:
            net(x)
        except _Caught as caught:
            return caught.tensor.flatten(1)
        finally:
            handle.remove()
        raise ZooError(f"{label}: the module get_classifier() returns never ran")

    return classifier_input


@dataclass
class Backbone:
    """A loaded backbone, ready to give features on ``device``."""

    net: nn.Module
    features: Features
    normalize: Normalizer
    device: torch.device
    amp_dtype: torch.dtype


def load_backbone(
    candidate: Candidate, weights_file: Path, in_chans: int, device: torch.device, precision: str
) -> Backbone:
    """The candidate's pretrained network as ``zoo train --pretrained`` starts from it, in
    eval mode on ``device``, with the normalization its weights were trained with."""
    import torch

    from zoo.device.defaults import use_channels_last
    from zoo.device.precision import resolve_precision
    from zoo.models import hfconfig
    from zoo.models.finetune import create_network, source_normalization
    from zoo.models.inference import Normalizer
    from zoo.probing.candidates import head_classes

    weights = candidate.weights
    net = create_network(
        weights.qualified,
        pretrained=True,
        num_classes=head_classes(weights),
        in_chans=in_chans,
        image_size=candidate.image_size,
    )
    # Weights that say nothing of their input were trained as timm assumes: ImageNet's.
    found = source_normalization(weights_file, in_chans)
    mean, std = found if found is not None else hfconfig.normalization({}, in_chans)
    amp_dtype = resolve_precision(precision, device, net)
    channels_last = use_channels_last(None, device, net, precision)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device, memory_format=memory_format).eval()
    label = f"architecture {weights.component.qualified!r}"
    return Backbone(
        net,
        penultimate(net, label),
        Normalizer(mean, std, device, channels_last),
        device,
        amp_dtype,
    )


@dataclass
class Extracted:
    """Features and labels of both splits (float32; labels int64 class indices ``[N]``, or for
    multi-label data float32 ``{0, 1}`` label vectors ``[N, K]``; on the CPU), and how fast the
    backbone made them here."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    images_per_second: float
    seconds: float

    def summary(self) -> dict[str, Any]:
        """What ``zoo.probing.cache.header`` reads back of these features' file."""
        return {
            "train": int(self.train.shape[0]),
            "val": int(self.val.shape[0]),
            "features": int(self.train.shape[1]),
            "images_per_second": self.images_per_second,
            "seconds": self.seconds,
        }


def extract_features(
    backbone: Backbone,
    train: Any,
    val: Any,
    *,
    batch_size: int,
    workers: int,
    progress: Callable[[int], None] | None = None,
    label_vectors: int | None = None,
) -> Extracted:
    """Run the backbone over both splits (in-memory or streamed, in order) in inference mode.

    ``images_per_second`` counts the images after the first batch over the time after it
    (that batch pays for one-time set-up: oneDNN primitives, cuDNN autotuning), synchronised
    with the device at both ends. Data too small for two more full batches is timed instead
    on ``TIMED_STEPS`` full batches of random pixels at the same shape, after one untimed
    (as ``zoo benchmark`` times a network). ``progress`` gets the images of every batch."""
    import time

    import torch

    from zoo.data.batches import make_batches
    from zoo.device.precision import autocast
    from zoo.labeling.task import MULTI, task_named

    encode = task_named(MULTI).encode if label_vectors is not None else None
    device = backbone.device
    outputs: list[list[torch.Tensor]] = [[], []]
    labels: list[list[torch.Tensor]] = [[], []]
    started = time.perf_counter()
    timed_from, timed_images, shape = None, 0, None
    with torch.inference_mode():
        for i, split in enumerate((train, val)):
            batches = make_batches(split, batch_size, device, train=False, workers=workers, seed=0)
            for xb, yb in batches.epoch(0):
                if xb.shape[0] == 0:
                    continue
                with autocast(device, backbone.amp_dtype):
                    out = backbone.features(backbone.normalize(xb))
                outputs[i].append(out.float())
                labels[i].append(yb if encode is None else encode(yb, label_vectors))
                if timed_from is None:
                    _sync(device)
                    timed_from, shape = time.perf_counter(), tuple(xb.shape[1:])
                else:
                    timed_images += xb.shape[0]
                if progress is not None:
                    progress(int(xb.shape[0]))
        _sync(device)
        ended = time.perf_counter()
        if not outputs[0] or not outputs[1]:
            missing = "train" if not outputs[0] else "val"
            raise ZooError(f"no readable images in the {missing} split")
        if timed_images >= 2 * batch_size:
            rate = timed_images / max(ended - (timed_from or started), 1e-9)
        else:
            rate = steady_rate(backbone, batch_size, shape or (1, 1, 1))
    train_x, val_x = (torch.cat(o).cpu() for o in outputs)
    kind = torch.long if encode is None else torch.float32
    train_y, val_y = (torch.cat(y).cpu().to(kind) for y in labels)
    return Extracted(train_x, train_y, val_x, val_y, rate, ended - started)


# Full batches timed when the data is too small to time the extraction itself.
TIMED_STEPS = 3


def steady_rate(backbone: Backbone, batch_size: int, shape: tuple[int, ...]) -> float:
    """Images per second of the backbone on full batches of random uint8 pixels of ``shape``
    (``[C, H, W]``), after one untimed batch."""
    import time

    import torch

    from zoo.device.precision import autocast

    device = backbone.device
    pixels = torch.randint(0, 256, (batch_size, *shape), dtype=torch.uint8, device=device)
    with autocast(device, backbone.amp_dtype):
        backbone.features(backbone.normalize(pixels))
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(TIMED_STEPS):
            backbone.features(backbone.normalize(pixels))
        _sync(device)
    return TIMED_STEPS * batch_size / max(time.perf_counter() - t0, 1e-9)


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
