"""Built-in datasets: the embedded digits (no download), image folders, and torchvision's
CIFAR-10/100, MNIST and Fashion-MNIST from local files (or downloaded with ``--download``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.plugins.hookspecs import Register, data_source, hookimpl


def digits(image_size: tuple[int, int] | None, seed: int, val_fraction: float) -> Any:
    """scikit-learn's 1,797 handwritten digit scans (8x8, 10 classes): real data, no download.

    Upsampled to 32x32 unless --image-size says otherwise; a seeded stratified split holds out
    --val-split of each class.
    """
    from zoo.builtins.loaders import load_digits

    return load_digits(image_size or (32, 32), seed, val_fraction)


def _folder_size(params: dict[str, Any], cap: tuple[int, int]) -> tuple[int, int] | None:
    from zoo.data.folder import typical_size

    return typical_size(Path(str(params["root"])).expanduser(), cap)


def _folder_split(params: dict[str, Any]) -> str:
    """A folder without train/ or val/ is a test set: all of it."""
    from zoo.data.folder import has_splits

    return "val" if has_splits(Path(str(params["root"])).expanduser()) else "all"


@data_source(location="root", folders=True, image_size=_folder_size, default_split=_folder_split)
def folder(
    image_size: tuple[int, int] | None,
    seed: int,
    val_fraction: float,
    root: str,
    channels: int = 3,
    cache: bool = True,
    max_memory_mb: float = 4096,
    workers: int | None = None,
    decode_device: str | None = None,
) -> Any:
    """Images in root/<class>/ (or root/train and root/val), resized to --image-size
    (default: the images' median size rounded up to a multiple of 8, at most 224).

    Without a val folder, a seeded stratified --val-split of each class is held out.

    channels: 3 (RGB) or 1 (greyscale). cache: keep decoded images on disk between runs
    (an unwritable cache folder is warned about and not used).
    max_memory_mb: folders larger than this once decoded stream from the cache instead of
    being held in memory. Unreadable files (damaged images, dangling links, FIFOs) are skipped
    with a warning. decode_device: decode the JPEGs in batches with torchvision on this device
    (cuda: nvJPEG) into the decoded cache before training, rather than with PIL in threads and
    loader workers (needs the cache).
    """
    from zoo.data.folder import load_folder, typical_size
    from zoo.plugins.cache import cache_dir

    path = Path(root).expanduser()
    return load_folder(
        path,
        image_size=image_size or typical_size(path, (224, 224)) or (224, 224),
        channels=channels,
        val_fraction=val_fraction,
        seed=seed,
        cache_dir=cache_dir() / "images" if cache else None,
        max_memory_mb=max_memory_mb,
        workers=workers,
        decode_device=decode_device,
    )


def _torchvision(name: str) -> Any:
    def factory(
        image_size: tuple[int, int] | None,
        seed: int,
        val_fraction: float,
        download: bool = False,
        root: str | None = None,
    ) -> Any:
        from zoo.builtins.loaders import load_torchvision

        return load_torchvision(name, root, download, image_size)

    factory.__doc__ = (
        f"torchvision's {name} (train and test splits; the test split validates).\n\n"
        "root: folder holding (or receiving) the files, default ~/.cache/zoo/datasets. "
        "Files must be present unless --download is given."
    )
    return factory


@hookimpl
def zoo_register_datasets(register: Register) -> None:
    register("digits", digits)
    register("folder", folder)
    register("cifar10", _torchvision("CIFAR-10"), aliases=("cifar-10",))
    register("cifar100", _torchvision("CIFAR-100"), aliases=("cifar-100",))
    register("mnist", _torchvision("MNIST"))
    register("fashion_mnist", _torchvision("Fashion-MNIST"), aliases=("fashion-mnist", "fmnist"))
