"""Built-in network definitions (imported only when one is built)."""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.errors import ZooError, shown

PADDINGS = ("same", "valid")
POOLS = ("flatten", "max", "avg")


class SimpleCNN(nn.Module):
    """The Keras tutorial CNN: [conv 3x3 + ReLU + max-pool 2x2] x (32, 64, 128), flatten,
    dense 128 + ReLU, dropout, linear classifier.

    ``padding="same"`` (with ceil-mode pooling) makes any input size of at least 1 pixel work.
    ``padding="valid"`` is the tutorial's exact network (Keras' defaults: unpadded convolutions,
    floor pooling; the same parameter count as the Keras model), which needs inputs large
    enough for three blocks (22 px with three widths).

    ``norm=True`` puts batch normalization after each convolution.
    ``pool="max"`` (or ``"avg"``) pools the last feature map over every position before the
    dense layer instead of flattening it: a feature counts wherever it appears, as several
    objects anywhere in a multi-label image need (the default network of multi-label runs).
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        image_size: int | tuple[int, int] = 32,
        widths: tuple[int, ...] = (32, 64, 128),
        hidden: int = 128,
        dropout: float = 0.5,
        padding: str = "same",
        pool: str = "flatten",
        norm: bool = False,
    ) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ZooError(
                f"simplecnn: padding must be one of {', '.join(PADDINGS)}, got {shown(padding)}"
            )
        if pool not in POOLS:
            raise ZooError(f"simplecnn: pool must be one of {', '.join(POOLS)}, got {shown(pool)}")
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        same = padding == "same"
        layers: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1 if same else 0),
                *([nn.BatchNorm2d(width)] if norm else []),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=same),
            ]
            channels = width
            if same:
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            else:
                h, w = (h - 2) // 2, (w - 2) // 2
        if h < 1 or w < 1:
            size = "x".join(
                str(s) for s in ((image_size,) * 2 if isinstance(image_size, int) else image_size)
            )
            raise ZooError(
                f"simplecnn:padding=valid: a {size} input shrinks to nothing in {len(widths)} "
                f"blocks; use a larger --image-size ({_valid_minimum(len(widths))} px at least) "
                "or padding=same"
            )
        self.features = nn.Sequential(*layers)
        pooling: list[nn.Module] = []
        if pool != "flatten":
            pooling = [nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)]
            h = w = 1
        self.head = nn.Sequential(
            *pooling,
            nn.Flatten(),
            nn.Linear(channels * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.num_features = hidden
        self.num_classes = num_classes
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))

    def get_classifier(self) -> nn.Module:
        """The final layer (timm's name for it), replaced when fine-tuning to new classes."""
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes)


def _valid_minimum(blocks: int) -> int:
    """The smallest side that survives ``blocks`` unpadded 3x3 convolutions and 2x2 pools."""
    side = 1
    for _ in range(blocks):
        side = 2 * side + 2
    return side
