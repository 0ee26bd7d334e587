"""Image folders (``root/<class>/<image>``, or ``root/train`` and ``root/val``): the folder
source's listing, split, proposed size and loading, on the shared pieces of ``zoo.data``
(``listing``, ``decoder``, ``cache``, ``streaming``, ``loading``)."""

from __future__ import annotations

from pathlib import Path

from zoo.data.decoder import typical_size_of
from zoo.data.listing import list_folder
from zoo.data.loading import load_images
from zoo.data.splits import DataSplits, stratified_split
from zoo.errors import ZooError

VAL_DIRS = ("val", "validation", "valid")


def has_splits(root: Path) -> bool:
    """Whether a folder holds its own splits (``train/``, ``val/``) rather than only classes."""
    return any((root / d).is_dir() for d in ("train", *VAL_DIRS))


def typical_size(root: Path, cap: tuple[int, int], sample: int = 256) -> tuple[int, int] | None:
    """A training size for a folder's images (``decoder.typical_size_of`` its training files);
    None when no image can be read."""
    train_root = root / "train" if (root / "train").is_dir() else root
    try:
        files = list_folder(train_root).files
    except ZooError:
        return None  # loading the folder says what is wrong with it
    return typical_size_of(files, cap, sample)


def load_folder(
    root: Path,
    *,
    image_size: tuple[int, int],
    channels: int,
    val_fraction: float,
    seed: int,
    cache_dir: Path | None,
    max_memory_mb: float,
    workers: int | None = None,
    decode_device: str | None = None,
) -> DataSplits:
    """Split, decode and hold (or stream) an image folder; see the ``folder`` dataset."""
    if channels not in (1, 3):
        raise ZooError(f"folder: channels must be 1 or 3, got {channels}")
    # root/train (+ root/val): the given split; root/train alone, or class folders at the
    # top: a seeded stratified split of what is there.
    train_root = root / "train" if (root / "train").is_dir() else root
    val_root = next((root / d for d in VAL_DIRS if (root / d).is_dir()), None)
    listing = list_folder(train_root)
    listing.warn()
    classes = listing.classes
    special = [str(path) for path, _ in listing.unreadable]
    if train_root != root and val_root is not None:
        val_list = list_folder(val_root, classes)
        val_list.warn()
        special += [str(path) for path, _ in val_list.unreadable]
        files = listing.files + val_list.files
        labels = listing.labels + val_list.labels
        train_idx = list(range(len(listing.files)))
        val_idx = list(range(len(listing.files), len(files)))
    else:
        files, labels = listing.files, listing.labels
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)

    return load_images(
        files,
        labels,
        train_idx,
        val_idx,
        classes,
        where=str(root),
        image_size=image_size,
        channels=channels,
        cache_dir=cache_dir,
        max_memory_mb=max_memory_mb,
        workers=workers,
        decode_device=decode_device,
        special=special,
    )
