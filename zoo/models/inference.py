"""A trained model packaged for inference: the network plus what it expects as input.

This is the one inference path of ``zoo predict``, ``zoo eval`` and ``zoo serve``: raw images
become model input through ``LoadedModel.preprocess`` (the ``normalizer``, in the memory format
the forward pass wants), and ``LoadedModel.forward`` runs the network through its engine (the
eager network under the model's precision, or what ``zoo.models.engines.prepare`` chose and
compiled for this CPU)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models.weights import ModelInfo


class Normalizer:
    """Float images in [0, 1] (or uint8 images in 0-255) -> ``(x - mean) / std`` in one fused op,
    in the model's memory format. Shared by training, evaluation and inference so all three see
    the same input (uint8 input differs from its float form by at most one float32 ulp)."""

    def __init__(
        self, mean: Any, std: Any, device: torch.device, channels_last: bool = False
    ) -> None:
        mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = (1.0 / std_t).to(device)
        self.shift = (-mean_t / std_t).to(device)
        self.scale_uint8 = self.scale / 255  # converts and scales raw pixels in the same op
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.shift, x, self.scale_uint8 if x.dtype == torch.uint8 else self.scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class LoadedModel(nn.Module):
    """``zoo.load``'s result. Calling it runs the network on normalized input (the same logits
    as at the end of training); ``preprocess`` and ``predict`` take raw images."""

    def __init__(self, net: nn.Module, info: ModelInfo) -> None:
        super().__init__()
        self.net = net
        self.info = info
        self.channels_last = False  # the memory format the forward pass takes
        self.net_channels_last = False  # the network's own: zoo.load follows zoo's defaults
        self.amp_dtype = torch.float32  # zoo.load's precision: what forward autocasts to
        self.engine: Any = None  # a compiled engine (zoo.models.engines); None: the network
        self.source: Any = None  # the weights file it was loaded from (engines' cache key)
        self.hub = False  # whether that file is a Hub download (its cache is not ours)
        self.register_buffer("mean", torch.tensor(info.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(info.std).view(1, -1, 1, 1), persistent=False)

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @property
    def image_size(self) -> tuple[int, int]:
        return self.info.image_size

    @property
    def task(self) -> str:
        """``single-label`` or ``multi-label`` (``zoo.labeling.task``)."""
        from zoo.labeling.task import task_of

        return task_of(self.info)

    @property
    def thresholds(self) -> dict[str, float] | None:
        """Multi-label: each class's probability threshold, as chosen on validation (or
        ``--threshold``); None for single-label models."""
        found = self.info.thresholds
        return None if found is None else dict(zip(self.info.classes, found, strict=True))

    @property
    def normalizer(self) -> Normalizer:
        """uint8 or [0, 1] images -> the network's input, in the format its engine takes."""
        return Normalizer(self.mean, self.std, self.mean.device, self.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of normalized input: through the compiled engine when one is in use (in
        inference only), else the network under the model's precision."""
        if self.engine is not None and not torch.is_grad_enabled():
            return self.engine(x)
        from zoo.device.precision import autocast

        with autocast(x.device, self.amp_dtype):
            return self.net(x)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (0-255) or float (0-1) ``[B, C, H, W]`` images -> normalized model input at
        the trained size."""
        device = self.mean.device
        x = images.to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if x.shape[1] != self.info.in_chans:
            raise ValueError(f"expected {self.info.in_chans} channels, got {x.shape[1]}")
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(
                x, size=self.image_size, mode="bilinear", antialias=True, align_corners=False
            )
        return self.normalizer(x)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The logits of raw uint8 (0-255) or float (0-1) ``[B, C, H, W]`` images: what
        ``zoo predict``, ``zoo serve`` and this API's ``predict`` compute, in float32."""
        return self(self.preprocess(images)).float()

    def predict(self, images: torch.Tensor, top_k: int = 5) -> list[Any]:
        """Each image's answer, as ``zoo predict`` gives it: single-label, its top-k ``(class
        name, probability)`` pairs; multi-label, a ``LabelSet`` (``labels``: the classes at or
        above their thresholds; ``probabilities``: every class's, highest first)."""
        from zoo.labeling.outputs import output_for

        output = output_for(self.info, top_k)
        return output.answers(output.activate(self.logits(images)))

    def extra_repr(self) -> str:
        info: Any = self.info
        return f"arch={info.arch}, classes={len(info.classes)}, image_size={info.image_size}"
