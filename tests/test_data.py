"""Datasets: the embedded digits, image folders (and their bad inputs), torchvision files."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_image_folder

import zoo
from zoo.data.cache import DecodedCache
from zoo.data.decoder import decode_image
from zoo.data.folder import typical_size
from zoo.data.listing import list_folder
from zoo.data.splits import DataSplits, ImageTensors, channel_stats, stratified_split
from zoo.data.streaming import StreamedFolder
from zoo.errors import ZooError
from zoo.plugins.components import resolve


def build(spec: str, image_size=None, seed: int = 0, val: float = 0.2, **kw) -> DataSplits:
    return resolve("dataset", spec).build(image_size=image_size, seed=seed, val_fraction=val, **kw)


def test_digits_is_real_embedded_data() -> None:
    data = build("digits")
    assert isinstance(data.train, ImageTensors) and isinstance(data.val, ImageTensors)
    assert len(data.train) + len(data.val) == 1797
    assert data.classes == [str(d) for d in range(10)] and data.in_chans == 1
    assert data.train.images.shape[1:] == (1, 32, 32) and data.train.images.dtype == torch.uint8
    # Stratified: every class is in both splits, in proportion.
    val_counts = torch.bincount(data.val.labels, minlength=10)
    assert val_counts.min() >= 30 and val_counts.max() <= 40
    assert data.train.images.float().std() > 50  # real scans, not zeros
    small = build("digits", image_size=(8, 8))
    assert small.train.images.shape[1:] == (1, 8, 8)


def test_split_is_seeded_and_disjoint() -> None:
    labels = [i % 3 for i in range(30)]
    a = stratified_split(labels, 0.2, seed=1)
    assert a == stratified_split(labels, 0.2, seed=1)
    assert a != stratified_split(labels, 0.2, seed=2)
    train, val = a
    assert not set(train) & set(val) and len(train) + len(val) == 30 and len(val) == 6


def test_folder_reads_classes_and_splits(image_folder: Path) -> None:
    data = build(f"folder:root={image_folder}", image_size=(16, 16))
    assert data.classes == ["cats", "dogs", "owls"] and data.in_chans == 3
    assert len(data.train) + len(data.val) == 30
    assert set(torch.bincount(data.val.labels).tolist()) == {2}  # 20% of 12, 10 and 8, rounded
    assert data.train.images.shape[1:] == (3, 16, 16)
    # The class's colour channel dominates (the pixels really were decoded).
    for label in range(3):
        images = data.train.images[data.train.labels == label].float()
        assert images.mean(dim=(0, 2, 3)).argmax().item() == label


def test_folder_with_train_and_val_subfolders(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", {"a": 4, "b": 5})
    write_image_folder(tmp_path / "val", {"a": 2, "b": 1}, seed=1)
    data = build(f"folder:root={tmp_path},channels=1", image_size=(8, 8))
    assert (len(data.train), len(data.val), data.in_chans) == (9, 3, 1)
    write_image_folder(tmp_path / "val", {"zebra": 1})
    with pytest.raises(ZooError, match="classes the training data lacks: zebra"):
        build(f"folder:root={tmp_path}", image_size=(8, 8))


def test_folder_with_train_alone_holds_out_a_stratified_split(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", {"a": 10, "b": 5})
    data = build(f"folder:root={tmp_path}", image_size=(8, 8), val=0.2)
    assert data.classes == ["a", "b"]
    assert torch.bincount(data.val.labels).tolist() == [2, 1]
    assert len(data.train) == 12


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tiff"])
def test_every_listed_format_decodes(tmp_path: Path, ext: str) -> None:
    write_image_folder(tmp_path, {"x": 1, "y": 1}, ext=ext)
    files = list_folder(tmp_path).files
    assert len(files) == 2
    pixels = decode_image(files[0], (10, 12), 3)
    assert pixels.shape == (3, 10, 12) and pixels.dtype == np.uint8 and pixels.max() > 100


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("file", "is not a folder"),
        ("empty", "no class folders with images"),
        ("single", r"only one class \('only'\)"),
    ],
)
def test_folder_bad_input_fails_before_training(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout == "file":
        root.write_text("not a folder")
    elif layout == "empty":
        (root / "a").mkdir(parents=True)
        (root / "a" / "notes.txt").write_text("no images")
    elif layout == "single":
        write_image_folder(root, {"only": 3})
    with pytest.raises(ZooError, match=message):
        build(f"folder:root={root}", image_size=(8, 8))


def test_corrupt_images_are_skipped_with_a_warning(image_folder: Path, capsys) -> None:
    (image_folder / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (image_folder / "dogs" / "empty.png").write_bytes(b"")
    data = build(f"folder:root={image_folder},cache=false", image_size=(8, 8))
    err = capsys.readouterr().err
    assert "warning: skipped unreadable image" in err
    assert "broken.jpg" in err and "empty.png" in err
    assert len(data.skipped) == 2 and len(data.train) + len(data.val) == 30


def test_decoded_cache_skips_decoding_on_later_runs(image_folder: Path, tmp_path: Path) -> None:
    files = list_folder(image_folder).files
    cache = DecodedCache(files, (8, 8), 3, tmp_path / "cache")
    decoded, _ = cache.decode_missing(workers=2)
    assert decoded == 30
    again = DecodedCache(files, (8, 8), 3, tmp_path / "cache")
    assert again.decode_missing(workers=2)[0] == 0
    assert np.array_equal(again.arrays()[0], cache.arrays()[0])
    # Touching a file changes the key: a new cache, decoded afresh.
    files[0].write_bytes(files[1].read_bytes())
    assert DecodedCache(files, (8, 8), 3, tmp_path / "cache").key != cache.key


def test_large_folders_stream_and_count_decodes(image_folder: Path) -> None:
    data = build(f"folder:root={image_folder},max_memory_mb=0.001", image_size=(8, 8))
    assert isinstance(data.train, StreamedFolder)
    first = [data.train[i] for i in range(len(data.train))]
    assert all(item[0].shape == (3, 8, 8) for item in first)
    decoded = int(data.train.decoded.sum())
    again = [data.train[i] for i in range(len(data.train))]
    assert int(data.train.decoded.sum()) == decoded  # the second pass decoded nothing
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = struct.pack(">HBB", 0, 0x08, array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(magic + dims + array.astype(np.uint8).tobytes())


def test_mnist_from_local_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    data = build(f"mnist:root={tmp_path}")
    assert (len(data.train), len(data.val), data.in_chans) == (20, 10, 1)
    assert data.image_size == (28, 28) and data.classes[0].startswith("0")
    assert build(f"mnist:root={tmp_path}", image_size=(16, 16)).image_size == (16, 16)


def test_missing_torchvision_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match=r"CIFAR-10 files not found under .*add --download"):
        build(f"cifar10:root={tmp_path}")


def test_a_damaged_cache_file_is_replaced_whole(image_folder: Path, tmp_path: Path) -> None:
    files = list_folder(image_folder).files
    cache = DecodedCache(files, (8, 8), 3, tmp_path / "cache")
    cache.decode_missing(workers=2)
    expected = np.array(cache.arrays()[0])
    del cache  # its memory map would outlive the damage below
    table = tmp_path / "cache" / f"{DecodedCache(files, (8, 8), 3, None).key}.npy"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [table.name]  # no leftovers
    table.write_bytes(b"\x93NUMPY garbage")
    again = DecodedCache(files, (8, 8), 3, tmp_path / "cache")
    assert again.decode_missing(workers=2)[0] == 30
    assert np.array_equal(again.arrays()[0], expected)


def test_unreadable_files_met_by_loader_workers_are_counted_without_a_cache(
    image_folder: Path,
) -> None:
    from zoo.data.batches import make_batches

    bad = image_folder / "dogs" / "003.png"
    bad.write_bytes(b"not a png")
    data = build(
        f"folder:root={image_folder},max_memory_mb=0.001,cache=false", val=0, image_size=(8, 8)
    )
    batches = make_batches(data.train, 8, torch.device("cpu"), train=False, workers=2, seed=0)
    seen = sum(len(y) for _, y in batches.epoch(0))
    assert seen == 30 and data.train.unreadable() == [bad]  # found in a worker process


def test_streamed_unreadable_files_are_replaced_by_the_next_readable(
    image_folder: Path, capsys
) -> None:
    bad = image_folder / "cats" / "000.png"
    bad.write_bytes(b"not a png")
    data = build(
        f"folder:root={image_folder},max_memory_mb=0.001,cache=false", val=0, image_size=(8, 8)
    )
    assert isinstance(data.train, StreamedFolder)
    assert data.train.cache.arrays()[0] is None  # without a cache no pixels are held
    position = data.train.cache.files.index(bad)
    image, label = data.train[position]
    assert image.shape == (3, 8, 8) and label == data.train.labels[position + 1]
    assert "skipped unreadable image" in capsys.readouterr().err
    data.train[position]
    assert capsys.readouterr().err == ""  # reported once
    assert data.train.unreadable() == [bad]
    # Without a cache every access decodes (and is counted as such).
    before = int(data.train.decoded.sum())
    data.train[position + 2]
    assert int(data.train.decoded.sum()) == before + 1


def test_splits_name_the_file_behind_each_image(image_folder: Path) -> None:
    held = build(f"folder:root={image_folder}", image_size=(8, 8))
    for split in (held.train, held.val):
        assert len(split.paths) == len(split)
        for i in (0, len(split) - 1):
            expected = decode_image(Path(split.paths[i]), (8, 8), 3)
            assert np.array_equal(split.images[i].numpy(), expected)
    assert sorted(held.train.paths + held.val.paths) == sorted(
        str(f) for f in list_folder(image_folder).files
    )
    # Streamed, with an unreadable file: its item is the next readable file's, and so is its path.
    bad = image_folder / "cats" / "000.png"
    bad.write_bytes(b"not a png")
    streamed = build(f"folder:root={image_folder},max_memory_mb=0.001", val=0, image_size=(8, 8))
    items = [streamed.train[i][0].numpy() for i in range(len(streamed.train))]
    paths = streamed.train.paths
    assert str(bad) not in paths and paths[0] == paths[1]
    for item, path in zip(items, paths, strict=True):
        assert np.array_equal(item, decode_image(Path(path), (8, 8), 3))


def special_files(folder: Path) -> list[Path]:
    """What an image folder may hold besides images, named like images: a dangling link, a
    FIFO (which blocks whoever opens it for reading), a socket, a link to a directory."""
    import socket

    made = [folder / "cats" / "gone.png", folder / "dogs" / "pipe.png"]
    made[0].symlink_to(folder / "cats" / "never-there.png")
    os.mkfifo(made[1])
    sock = socket.socket(socket.AF_UNIX)
    made.append(folder / "owls" / "s.png")
    try:
        sock.bind(str(made[-1]))
    except OSError:  # a path too long for a socket address
        made.pop()
    finally:
        sock.close()
    made.append(folder / "owls" / "dir.png")
    made[-1].symlink_to(folder / "cats")
    return made


@pytest.mark.parametrize("memory", ["4096", "0.001"], ids=["in-memory", "streamed"])
def test_special_files_are_skipped_never_opened(image_folder: Path, capsys, memory) -> None:
    made = special_files(image_folder)
    spec = f"folder:root={image_folder},max_memory_mb={memory},cache=false"
    data = build(spec, image_size=(8, 8), val=0)
    err = capsys.readouterr().err
    for path in made:
        assert f"warning: skipped unreadable image {path} (" in err, err
    assert "(a dangling symbolic link)" in err and "(a FIFO, not a regular file)" in err
    assert sorted(data.skipped) == sorted(map(str, made))
    assert len(data.train) == 30
    if isinstance(data.train, StreamedFolder):  # every item decodes: none of them is special
        assert all(data.train[i][0].shape == (3, 8, 8) for i in range(30))


def test_a_file_swapped_for_a_fifo_after_listing_is_not_opened(image_folder: Path) -> None:
    path = image_folder / "cats" / "000.png"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(OSError, match="a FIFO, not a regular file"):
        decode_image(path, (8, 8), 3)


def test_empty_class_folders_are_named(image_folder: Path, capsys) -> None:
    (image_folder / "zebras").mkdir()
    (image_folder / "zebras" / "notes.txt").write_text("no images yet")
    data = build(f"folder:root={image_folder},cache=false", image_size=(8, 8))
    assert data.classes == ["cats", "dogs", "owls"]
    err = capsys.readouterr().err
    assert f"warning: class folder {image_folder / 'zebras'} holds no images; it is not used" in err


def test_an_unwritable_cache_directory_is_warned_about_once(
    cli, image_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(blocker / "cache"))  # even root cannot write there
    monkeypatch.setenv("ZOO_DISABLE_PLUGIN_AUTOLOAD", "1")  # no registry cache: load less
    args = ["--data", image_folder, "--image-size", "8", "--epochs", "1"]
    result = cli("train", *args, "--out", tmp_path / "run")
    warnings = [line for line in result.stderr.splitlines() if "image cache" in line]
    assert warnings == [
        f"warning: cannot write the image cache in {blocker / 'cache' / 'images'} (Not a "
        "directory); decoding without it (set ZOO_CACHE_DIR to a writable folder to cache "
        "decoded images)"
    ]


def test_folder_runs_pick_their_image_size_from_the_images(cli, tmp_path: Path) -> None:
    # 20x24 images: trained at 24, not at 224 (the old default, 90 times the pixels).
    root = write_image_folder(tmp_path / "small", {"a": 6, "b": 6}, size=(20, 24))
    result = cli("train", "--data", root, "--epochs", "1", "--out", tmp_path / "run")
    assert "image size 24 (from the images)" in result.stdout
    assert zoo.load(tmp_path / "run").image_size == (24, 24)
    assert 'image_size = "24"' in (tmp_path / "run" / "config.toml").read_text()
    # An architecture's default input size caps it; large images come down to it.
    assert typical_size(root, cap=(16, 16)) == (16, 16)
    assert typical_size(root, cap=(224, 224)) == (24, 24)
    # Two classes: eval.json names its top-k for what it is.
    report = json.loads(cli("eval", tmp_path / "run", "--json", "--no-plots").stdout)
    assert (report["top_k"], "top5_accuracy" in report) == (2, False)
    assert report["top_k_accuracy"] == 1.0  # two classes: the true one is always in the top 2


def test_channel_stats_equal_the_float64_computation() -> None:
    g = torch.Generator().manual_seed(0)
    for shape in [(300, 3, 20, 24), (7, 1, 5, 3)]:
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        x = images.double() / 255
        mean = x.mean(dim=(0, 2, 3))
        std = x.var(dim=(0, 2, 3), unbiased=False).sqrt()
        got_mean, got_std = channel_stats(images)
        assert np.allclose(got_mean, mean.numpy(), atol=2e-6)
        assert np.allclose(got_std, std.numpy(), atol=2e-6)
    flat = torch.full((4, 3, 2, 2), 9, dtype=torch.uint8)
    assert channel_stats(flat)[1] == (1e-3, 1e-3, 1e-3)  # a constant channel: std floored


def test_a_folder_held_in_memory_is_the_same_from_the_cache_and_without(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("zoo.data.cache.GATHER_BYTES", 2 * (3 * 8 * 8 + 1))  # 2 rows a read
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    spec = f"folder:root={image_folder}"
    decoded = build(spec, image_size=(8, 8))  # decodes into the cache file
    cached = build(spec, image_size=(8, 8))  # reads it
    plain = build(f"{spec},cache=false", image_size=(8, 8))
    for data in (cached, plain):
        for ours, theirs in ((data.train, decoded.train), (data.val, decoded.val)):
            assert torch.equal(ours.images, theirs.images)
            assert torch.equal(ours.labels, theirs.labels)
    listing = list_folder(image_folder)
    train_idx, _ = stratified_split(listing.labels, 0.2, 0)
    first = torch.from_numpy(decode_image(listing.files[train_idx[0]], (8, 8), 3))
    assert torch.equal(plain.train.images[0], first)  # the split's rows in file order
