"""``--freeze-epochs N``: the first N epochs train the classifier alone, then everything trains
(fastai's ``fine_tune``): a new classifier learns from the pretrained features before its
random gradients reach them.

While frozen, the backbone's parameters do not require gradients, so every optimizer leaves
them as they are (no update, no weight decay, no optimizer state), and its normalization layers
run in eval mode, so their running statistics stay those of the pretrained weights too. The
state is set at the start of every epoch from the epoch number alone, so a resumed run freezes
exactly as an uninterrupted one; the EMA copy of a frozen tensor stays equal to it. When the
backbone freezes or thaws, the trainer wraps the network again: DDP then synchronises the
gradients of exactly the parameters that train (no ``find_unused_parameters`` traversal every
step), and a compiled model compiles once more.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from zoo.errors import ZooError
from zoo.models.finetune import classifier_keys


class Freezer:
    """Freezes everything but the classifier of ``net`` during its first ``epochs`` epochs
    (none: nothing to do, and any network will do)."""

    def __init__(self, net: nn.Module, epochs: int, label: str = "this network") -> None:
        self.epochs = epochs
        self.frozen = False
        self.backbone: list[nn.Parameter] = []
        self.norms: list[nn.Module] = []
        if not epochs:
            return
        head = classifier_keys(net)
        if not head:
            raise ZooError(
                f"--freeze-epochs: zoo cannot find the classifier of {label} (it needs timm's "
                "get_classifier() or pretrained_cfg['classifier']), so it cannot freeze the rest"
            )
        self.backbone = [p for n, p in net.named_parameters() if n not in head and p.requires_grad]
        self.norms = [
            m
            for name, m in net.named_modules()
            if isinstance(m, _NormBase) and not any(f"{name}.{k}" in head for k in m.state_dict())
        ]

    def apply(self, epoch: int) -> bool:
        """Freeze or thaw for ``epoch`` (0-based); call after ``model.train()``. Whether the
        backbone froze or thawed (the network must then be wrapped again)."""
        frozen = epoch < self.epochs
        if frozen:
            for m in self.norms:
                m.eval()
        if frozen == self.frozen:
            return False
        for p in self.backbone:
            p.requires_grad_(not frozen)
        self.frozen = frozen
        return True
