"""Built-in network definitions (imported only when one is built)."""

from __future__ import annotations

import math

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """The Keras tutorial CNN: [conv 3x3 + ReLU + max-pool 2x2] x (32, 64, 128), flatten,
    dense 128 + ReLU, dropout, linear classifier.

    'Same' padding and ceil-mode pooling make any input size of at least 1 pixel work.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        image_size: int | tuple[int, int] = 32,
        widths: tuple[int, ...] = (32, 64, 128),
        hidden: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        layers: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            channels = width
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
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
