"""Loaders behind the built-in datasets (imported only when one is used)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from zoo.builtins.datasets import digits_file
from zoo.data.splits import DataSplits, ImageTensors, resize_tensors, stratified_split
from zoo.errors import ZooError

DIGITS_CLASSES = [str(d) for d in range(10)]


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scans as uint8 ``[N, 1, 8, 8]`` (0-16 rescaled to 0-255) and labels."""
    with gzip.open(digits_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    pixels = np.rint(table[:, :64] * (255 / 16)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return pixels, table[:, 64].astype(np.int64)


def load_digits(image_size: tuple[int, int], seed: int, val_fraction: float) -> DataSplits:
    pixels, labels = digits_arrays()
    images = resize_tensors(torch.from_numpy(pixels), image_size)
    targets = torch.from_numpy(labels)
    train_idx, val_idx = stratified_split(labels.tolist(), val_fraction, seed)
    train = ImageTensors(images[train_idx], targets[train_idx])
    val = ImageTensors(images[val_idx], targets[val_idx]) if val_idx else None
    return DataSplits(train, val, DIGITS_CLASSES, image_size, in_chans=1)


_TORCHVISION = {
    "CIFAR-10": ("CIFAR10", "cifar-10-batches-py"),
    "CIFAR-100": ("CIFAR100", "cifar-100-python"),
    "MNIST": ("MNIST", "MNIST"),
    "Fashion-MNIST": ("FashionMNIST", "FashionMNIST"),
}


def load_torchvision(
    name: str, root: str | None, download: bool, image_size: tuple[int, int] | None
) -> DataSplits:
    """A torchvision dataset decoded into memory; its test split serves as validation."""
    import torchvision.datasets as tvd

    from zoo.plugins.cache import cache_dir

    cls_name, folder = _TORCHVISION[name]
    base = Path(root).expanduser() if root else cache_dir() / "datasets"
    cls = getattr(tvd, cls_name)
    try:
        train_set = cls(str(base), train=True, download=download)
        test_set = cls(str(base), train=False, download=download)
    except RuntimeError as exc:
        if download:
            raise ZooError(f"could not download {name} into {base}: {exc}") from None
        raise ZooError(
            f"{name} files not found under {base / folder}; put them there, pass root=PATH "
            f"(e.g. --data {cls_name.lower()}:root=PATH) or add --download"
        ) from None
    except OSError as exc:
        raise ZooError(f"could not read {name} from {base}: {exc}") from None

    def tensors(ds: object) -> ImageTensors:
        data = ds.data  # type: ignore[attr-defined]
        images = torch.as_tensor(np.asarray(data))
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        if image_size is not None:
            images = resize_tensors(images.contiguous(), image_size)
        labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)  # type: ignore
        return ImageTensors(images.contiguous(), labels)

    train, val = tensors(train_set), tensors(test_set)
    size = (int(train.images.shape[2]), int(train.images.shape[3]))
    return DataSplits(train, val, list(train_set.classes), size, int(train.images.shape[1]))
