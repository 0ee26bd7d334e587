"""Built-in datasets: the embedded digits (no download), and the data sources: image folders,
label tables, Hugging Face datasets and WebDataset shards; torchvision's CIFAR-10/100, MNIST and
Fashion-MNIST from local files (or downloaded with ``--download``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.plugins.hookspecs import Register, data_source, hookimpl


def digits_file() -> Path:
    """scikit-learn's bundled digits.csv.gz, located without importing scikit-learn (slow)."""
    import importlib.util

    from zoo.errors import ZooError

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ZooError("the digits dataset needs scikit-learn, which is not installed")
    path = Path(next(iter(spec.submodule_search_locations)), "datasets", "data", "digits.csv.gz")
    if not path.is_file():
        raise ZooError(f"scikit-learn's digits data is missing ({path})")
    return path


def _digits_stamp(params: dict[str, Any]) -> str | None:
    """The bundled file's place, size and time."""
    from zoo.errors import ZooError

    try:
        path = digits_file()
    except ZooError:
        return None  # loading says why
    st = path.stat()
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}"


@data_source(stamp=_digits_stamp)
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


def _folder_stamp(params: dict[str, Any]) -> str | None:
    from zoo.data.listing import folder_stamp

    return folder_stamp(Path(str(params["root"])).expanduser())


@data_source(
    location="root",
    folders=True,
    image_size=_folder_size,
    default_split=_folder_split,
    stamp=_folder_stamp,
)
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


def _table_size(params: dict[str, Any], cap: tuple[int, int]) -> tuple[int, int] | None:
    from zoo.data.table import proposed_size

    return proposed_size(params, cap)


def _table_split(params: dict[str, Any]) -> str:
    from zoo.data.table import default_split

    return default_split(params)


@data_source(
    location="file",
    suffixes=(".csv", ".tsv", ".parquet"),
    image_size=_table_size,
    default_split=_table_split,
    path_params=("file",),
)
def table(
    image_size: tuple[int, int] | None,
    seed: int,
    val_fraction: float,
    file: str,
    image: str | None = None,
    label: str | None = None,
    root: str | None = None,
    delim: str | None = " ",
    channels: int = 3,
    cache: bool = True,
    max_memory_mb: float = 4096,
    workers: int | None = None,
    decode_device: str | None = None,
) -> Any:
    """A table (.csv, .tsv, .parquet) of image files and labels: --data labels.csv.

    image, label: the columns (default: found by name: image, file, filename, path; label,
    labels, class, target). root: the folder the paths are relative to (default: the table's).
    A split column (train, val, valid, validation, test) or fastai's is_valid decides the
    splits; without one, --val-split holds out a stratified part. delim separates several
    labels in a cell (multi-label; default: a space; none: one label per cell). Missing and
    unreadable images are skipped and counted. channels, cache, max_memory_mb, workers and
    decode_device: as for folder.
    """
    from zoo.data.table import load_table
    from zoo.plugins.cache import cache_dir

    return load_table(
        Path(file).expanduser(),
        image=image,
        label=label,
        root=root,
        delim=delim,
        image_size=image_size,
        channels=channels,
        val_fraction=val_fraction,
        seed=seed,
        cache_dir=cache_dir() / "images" if cache else None,
        max_memory_mb=max_memory_mb,
        workers=workers,
        decode_device=decode_device,
    )


def _hf_size(params: dict[str, Any], cap: tuple[int, int]) -> tuple[int, int] | None:
    from zoo.data.hf import proposed_size

    return proposed_size(params, cap)


@data_source(location="name", image_size=_hf_size)
def hf(
    image_size: tuple[int, int] | None,
    seed: int,
    val_fraction: float,
    name: str,
    config: str | None = None,
    image: str | None = None,
    label: str | None = None,
    revision: str | None = None,
    train: str | None = None,
    val: str | None = None,
    test: str | None = None,
    streaming: bool = False,
    channels: int = 3,
    cache: bool = True,
    max_memory_mb: float = 4096,
    workers: int | None = None,
) -> Any:
    """A Hugging Face dataset: --data hf:ORG/NAME (the Hub) or hf:LOCAL_DIR (its files).

    Read with datasets.load_dataset (its cache, HF_HOME, HF_HUB_OFFLINE and
    HF_DATASETS_OFFLINE). config: the dataset's configuration. image, label: the columns
    (default: the Image feature, the ClassLabel or Sequence(ClassLabel) one). train, val, test:
    the dataset's split names when they are not train, validation and test; without a
    validation split, --val-split holds out a stratified part of train. streaming: read the
    splits as streams instead of downloading them whole. channels, cache, max_memory_mb,
    workers: as for folder (images are decoded by zoo and cached).
    """
    from zoo.data.hf import load_hf
    from zoo.plugins.cache import cache_dir

    return load_hf(
        name,
        config=config,
        image=image,
        label=label,
        revision=revision,
        train=train,
        val=val,
        test=test,
        streaming=streaming,
        image_size=image_size,
        channels=channels,
        val_fraction=val_fraction,
        seed=seed,
        cache_dir=cache_dir() / "images" if cache else None,
        max_memory_mb=max_memory_mb,
        workers=workers,
    )


def _wds_size(params: dict[str, Any], cap: tuple[int, int]) -> tuple[int, int] | None:
    from zoo.data.shards import proposed_size

    return proposed_size(params, cap)


def _wds_split(params: dict[str, Any]) -> str:
    from zoo.data.shards import default_split

    return default_split(params)


def _wds_processes(params: dict[str, Any]) -> int | None:
    from zoo.data.shards import find_shards

    return len(find_shards(str(params["url"])).splits["train"])


@data_source(
    location="url", image_size=_wds_size, default_split=_wds_split, processes=_wds_processes
)
def wds(
    image_size: tuple[int, int] | None,
    seed: int,
    val_fraction: float,
    url: str,
    channels: int = 3,
    shuffle: int = 1000,
) -> Any:
    """WebDataset shards, streamed: --data wds:DIR_OR_URL (train-*.tar, val-*.tar) or a pattern
    (wds:URL/train-{000000..000127}.tar, with --val-data for validation).

    Local folders, http(s)://, s3:// and gs:// URLs, through the webdataset library. Each
    process and loader worker reads its own shards (split_by_node, split_by_worker), so every
    sample is read once per epoch; shuffle: the shuffle buffer's samples. A sample is an image
    member (.jpg, .jpeg, .png, .webp) and a label member (.cls index, .txt or .json name);
    class names from classes.txt beside the shards. channels: 3 (RGB) or 1 (greyscale).
    """
    from zoo.data.shards import load_shards

    return load_shards(url, image_size=image_size, channels=channels, seed=seed, shuffle=shuffle)


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
    register("table", table)
    register("hf", hf)
    register("wds", wds, aliases=("webdataset",))
    register("cifar10", _torchvision("CIFAR-10"), aliases=("cifar-10",))
    register("cifar100", _torchvision("CIFAR-100"), aliases=("cifar-100",))
    register("mnist", _torchvision("MNIST"))
    register("fashion_mnist", _torchvision("Fashion-MNIST"), aliases=("fashion-mnist", "fmnist"))
