"""Image folders (``root/<class>/<image>``): listing, decoding, the decoded cache, streaming.

Every image is decoded once at the target size into a memory-mapped cache keyed by the file
list, sizes and mtimes, so later epochs and later runs skip decoding. Folders that fit the memory
budget are then held as one uint8 tensor; larger ones stream from the cache through DataLoader
workers, decoding on first touch.

Only regular files are ever opened: a FIFO named ``x.png`` would block its reader forever, so
dangling links, FIFOs, sockets and devices are found by ``stat`` and skipped with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.splits import DataSplits, ImageTensors, default_workers, stratified_split
from zoo.errors import ZooError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
VAL_DIRS = ("val", "validation", "valid")

# Bumped when decode_image's output changes, so caches of the old pixels are not reused
# (3: EXIF orientation applied).
DECODER = 3
# Bumped when the cache file's layout changes.
CACHE_FORMAT = 2
# Bytes of cache rows read at a time when a folder is loaded into memory.
GATHER_BYTES = 16 * 2**20
# JPEGs decoded at a time with ``decode_device`` (torchvision's batched decode_jpeg).
DECODE_BATCH = 128
# Per-file status in the cache.
PENDING, DECODED, UNREADABLE = 0, 1, 2


@dataclass
class FolderListing:
    """Image files under ``root/<class>/``, with their labels; ``unreadable`` holds the
    image-named entries that are not regular files (with why), ``empty`` the class folders
    without any image."""

    files: list[Path]
    labels: list[int]
    classes: list[str]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)

    def warn(self) -> None:
        """Say what was left out, one line per file or folder."""
        for path, reason in self.unreadable:
            print(f"warning: skipped unreadable image {path} ({reason})", file=sys.stderr)
        for path in self.empty:
            print(f"warning: class folder {path} holds no images; it is not used", file=sys.stderr)


def special_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file (None when it is one), found without opening it:
    opening a FIFO for reading blocks until something writes to it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling symbolic link" if os.path.islink(path) else "no such file"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISDIR: "a directory",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "a special file")
    return f"{kind}, not a regular file"


def scan_images(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files under ``folder`` (by extension, recursively, hidden ones left out, sorted),
    and the image-named entries that are not regular files, with why. Symbolic links to files
    are followed; links to directories are not (as ``os.walk`` does)."""
    images: list[Path] = []
    special: list[tuple[Path, str]] = []
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # an unreadable sub-folder: os.walk skips it too
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS and entry.name[0] != ".":
                path = Path(entry.path)
                # DirEntry.is_file() needs no system call except for links
                reason = None if entry.is_file() else special_file(path) or "not a regular file"
                if reason is None:
                    images.append(path)
                else:
                    special.append((path, reason))
    return sorted(images), sorted(special)


def list_folder(root: Path, classes: list[str] | None = None) -> FolderListing:
    """Scan ``root/<class>/**/<image>``; classes are the sorted subfolders holding images."""
    if not root.exists():
        raise ZooError(f"data path {root} does not exist")
    if not root.is_dir():
        raise ZooError(f"data path {root} is not a folder")
    found: dict[str, list[Path]] = {}
    unreadable: list[tuple[Path, str]] = []
    empty: list[Path] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images, special = scan_images(sub)
        unreadable += special
        if images:
            found[sub.name] = images
        else:
            empty.append(sub)
    if classes is None:
        if not found:
            kinds = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
            raise ZooError(
                f"no class folders with images in {root}: expected {root}/<class>/<image> ({kinds})"
            )
        if len(found) == 1:
            raise ZooError(
                f"only one class ({next(iter(found))!r}) in {root}: "
                "classification needs at least two class folders"
            )
        classes = sorted(found)
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ZooError(f"{root} has classes the training data lacks: {', '.join(unknown)}")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files.extend(found.get(name, []))
        labels.extend([label] * len(found.get(name, [])))
    return FolderListing(files, labels, classes, unreadable, empty)


def has_splits(root: Path) -> bool:
    """Whether a folder holds its own splits (``train/``, ``val/``) rather than only classes."""
    return any((root / d).is_dir() for d in ("train", *VAL_DIRS))


def typical_size(root: Path, cap: tuple[int, int], sample: int = 256) -> tuple[int, int] | None:
    """A training size for a folder's images: their median height and width (of up to
    ``sample`` evenly spaced files, read from their headers only), each rounded up to a
    multiple of 8 and capped at ``cap``. None when no image can be read.

    Small images are then not blown up to 224 px (11 minutes and 4 GB instead of a minute for
    25-px scans), nor large ones trained at full size.
    """
    from PIL import Image

    train_root = root / "train" if (root / "train").is_dir() else root
    try:
        files = list_folder(train_root).files
    except ZooError:
        return None  # loading the folder says what is wrong with it
    step = max(1, len(files) // sample)
    heights, widths = [], []
    for path in files[::step][:sample]:
        try:
            with _open_regular(path) as f, Image.open(f) as im:
                w, h = im.size
                if _orientation(im, header_only=True) in _TRANSPOSED:
                    w, h = h, w
        except Exception:  # PIL raises many types; unreadable files do not count
            continue
        heights.append(h)
        widths.append(w)
    if not heights:
        return None

    def pick(values: list[int], limit: int) -> int:
        median = sorted(values)[len(values) // 2]
        return min(limit, max(8, -(-median // 8) * 8))

    return pick(heights, cap[0]), pick(widths, cap[1])


def _open_regular(path: Path) -> Any:
    """``path`` opened for binary reading, refused unless it is a regular file: checked before
    opening (a FIFO would block) and on the open descriptor (the file may be swapped meanwhile;
    O_NONBLOCK makes that open return at once)."""
    reason = special_file(path)
    if reason is not None:
        raise OSError(reason)

    def opener(name: str, flags: int) -> int:
        fd = os.open(name, flags | getattr(os, "O_NONBLOCK", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError("not a regular file")
        return fd

    return open(path, "rb", opener=opener)  # named by its path in PIL's messages


_ORIENTATION = 0x0112  # the EXIF tag
_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height


def _orientation(im: Any, header_only: bool = False) -> int:
    """The EXIF orientation (1: as stored). ``header_only``: without decoding the image, which
    PIL does to look for a PNG's EXIF chunk after its pixels (taken as 1 then)."""
    if header_only and im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        return int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block: decode as stored
        return 1


def decode_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode one image file to uint8 ``[C, H, W]`` at ``size`` (aspect ratio squashed, as
    Keras' ``target_size`` does), upright as its EXIF orientation says (as photo viewers show
    it). Training, evaluation and prediction all decode through here.

    PIL decodes (JPEGs in draft mode: libjpeg scales the DCT down while decoding when the image
    is at least twice the target), and torch's uint8 kernel does the antialiased bilinear resize
    on the channels-last pixels: PIL's resize result to within one level, several times faster.
    benchmarks/decode.py compares this with torchvision.io, whose decoders are deprecated.
    """
    with _open_regular(path) as f:
        return decode_file(f, path, size, channels)


class ImageTooLarge(ValueError):
    """An image over the number of pixels its decoder was allowed (found from its header)."""

    def __init__(self, path: Path | str, width: int, height: int, limit: int) -> None:
        super().__init__(f"{path} is {width}x{height} ({width * height:,} pixels), over {limit:,}")
        self.width, self.height, self.limit = width, height, limit


def decode_file(
    f: Any, path: Path | str, size: tuple[int, int], channels: int, max_pixels: int = 0
) -> np.ndarray:
    """``decode_image`` on an open binary file (``path`` names it in messages): what
    ``zoo serve`` decodes request bodies with, so that served images get training's pixels.
    ``max_pixels`` (0: no limit) refuses larger images before decoding (``ImageTooLarge``)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageOps

    with _open_image(f, path) as im:
        if 0 < max_pixels < im.size[0] * im.size[1]:
            raise ImageTooLarge(path, *im.size, max_pixels)
        _check_bomb(path, im)
        mode = "L" if channels == 1 else "RGB"
        orientation = _orientation(im)
        if im.format == "JPEG":
            upright = (size[0], size[1]) if orientation in _TRANSPOSED else (size[1], size[0])
            im.draft(mode, upright)
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit greyscale
            im = Image.fromarray(
                (np.asarray(im, dtype=np.float32) / 257).clip(0, 255).astype(np.uint8)
            )
        arr = np.array(im if im.mode == mode else im.convert(mode), dtype=np.uint8)
    pixels = torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1)).permute(2, 0, 1)
    if tuple(pixels.shape[1:]) != tuple(size):
        pixels = F.interpolate(
            pixels[None], size=size, mode="bilinear", antialias=True, align_corners=False
        )[0]
    return pixels.contiguous().numpy()


def _open_image(f: Any, path: Path | str) -> Any:
    """``PIL.Image.open`` on an open file, its error naming the file as opening by path would."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(f)
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"cannot identify image file {str(path)!r}") from None


def _check_bomb(path: Path | str, im: Any) -> None:
    """Warn, naming the file, about an image over PIL's decompression-bomb limit (PIL itself
    refuses those over twice the limit when opening them). PIL's own warning names no file:
    zoo's commands silence it (zoo.cli.common.command)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    pixels = im.size[0] * im.size[1]
    if limit and pixels > limit:
        warnings.warn(
            f"{path} is {im.size[0]}x{im.size[1]} ({pixels:,} pixels), over PIL's "
            f"decompression-bomb limit of {limit:,}: a huge image, or a file made to exhaust "
            "memory; decoding it",
            stacklevel=3,
        )


class DecodedCache:
    """Decoded images in one memory-mapped ``.npy`` file: a row per file holding its pixels
    and, in the last column, a status byte.

    The status byte is written after the pixels, so a run killed mid-decode never leaves a
    half-written image marked as done. A new file is linked into place only once it is fully
    created, so concurrent runs on the same folder share it instead of truncating each other's.
    Without a directory, ``keep_pixels`` decides between holding every image in memory (for
    folders loaded into memory) and decoding on every access (streaming without a cache).
    """

    def __init__(
        self,
        files: list[Path],
        size: tuple[int, int],
        channels: int,
        directory: Path | None,
        keep_pixels: bool = True,
        decode_device: str | None = None,
    ) -> None:
        self.files = files
        self.decode_device = decode_device
        self.shape = (len(files), channels, *size)
        self.directory = directory
        self.keep_pixels = keep_pixels or directory is not None
        self.key = _cache_key(files, size, channels, "torchvision" if decode_device else "")
        self._arrays: tuple[np.ndarray | None, np.ndarray] | None = None
        self._table: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers reopen the memory map (or start their own status) themselves.
        state = dict(self.__dict__)
        if self.directory is not None or not self.keep_pixels:
            state["_arrays"] = state["_table"] = None
        return state

    def arrays(self) -> tuple[np.ndarray | None, np.ndarray]:
        """``(pixels [N, C, H, W] or None, status [N])``, opened on first use in each process."""
        if self._arrays is None:
            n, row = self.shape[0], int(np.prod(self.shape[1:]))
            if self.directory is not None:
                table = _open_table(self.directory / f"{self.key}.npy", (n, row + 1))
            elif self.keep_pixels:
                table = np.zeros((n, row + 1), np.uint8)
            else:
                self._arrays = (None, np.zeros(n, np.uint8))
                return self._arrays
            # Views into the table, not copies: writes go to the memory map.
            self._table = table
            self._arrays = (table[:, :row].reshape(self.shape), table[:, row])
        return self._arrays

    def get(self, index: int) -> tuple[np.ndarray | None, str | None, bool]:
        """One file's pixels (None if unreadable), the decode error if this call hit one, and
        whether this call decoded the file (rather than reading it from the cache)."""
        pixels, status = self.arrays()
        if status[index] == UNREADABLE:
            return None, None, False
        if status[index] == DECODED and pixels is not None:
            return pixels[index], None, False
        try:
            image = decode_image(self.files[index], self.shape[2:], self.shape[1])
        except Exception as exc:  # PIL raises many exception types for corrupt files
            status[index] = UNREADABLE
            return None, f"{type(exc).__name__}: {exc}", True
        if pixels is not None:
            pixels[index] = image
        status[index] = DECODED
        return image, None, True

    def decode_missing(self, workers: int) -> tuple[int, dict[int, str]]:
        """Decode every pending file with a thread pool (PIL releases the GIL while decoding).

        Returns how many files were decoded and the errors met.
        """
        _, status = self.arrays()
        todo = [int(i) for i in np.flatnonzero(status == PENDING)]
        errors: dict[int, str] = {}
        if todo and self.decode_device:
            errors = self._decode_batched(todo, workers)
            self.flush()
        elif todo:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for i, (_, error, _) in zip(todo, pool.map(self.get, todo), strict=True):
                    if error:
                        errors[i] = error
            self.flush()
        return len(todo), errors

    def _decode_batched(self, todo: list[int], workers: int) -> dict[int, str]:
        """Decode JPEGs in batches with torchvision's ``decode_jpeg`` on ``decode_device`` (on
        CUDA, nvJPEG), resize them there and write them to the cache; other formats, and files
        torchvision cannot read, go through ``decode_image``. Reading the files is threaded."""
        import torch
        import torch.nn.functional as F
        from torchvision.io import ImageReadMode, decode_jpeg

        pixels, status = self.arrays()
        device = torch.device(self.decode_device or "cpu")
        size, channels = self.shape[2:], self.shape[1]
        mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
        errors: dict[int, str] = {}
        jpegs = [i for i in todo if self.files[i].suffix.lower() in (".jpg", ".jpeg")]
        others = set(todo) - set(jpegs)

        def read(i: int) -> torch.Tensor | None:
            """The file's bytes; None for a file that cannot be read (a dangling link, a FIFO):
            ``decode_image`` then says why."""
            try:
                with _open_regular(self.files[i]) as f:
                    return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
            except OSError:
                return None

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, len(jpegs), DECODE_BATCH):
                read_chunk = jpegs[start : start + DECODE_BATCH]
                contents = list(pool.map(read, read_chunk))
                others.update(i for i, b in zip(read_chunk, contents, strict=True) if b is None)
                chunk = [i for i, b in zip(read_chunk, contents, strict=True) if b is not None]
                data = [b for b in contents if b is not None]
                if not chunk:
                    continue
                try:
                    images = decode_jpeg(
                        data, mode=mode, device=device, apply_exif_orientation=True
                    )
                except RuntimeError:  # one bad file fails the batch: those go one by one
                    others.update(chunk)
                    continue
                for i, image in zip(chunk, images, strict=True):
                    if tuple(image.shape[1:]) != tuple(size):
                        resized = F.interpolate(
                            image[None].float(),
                            size=size,
                            mode="bilinear",
                            antialias=True,
                            align_corners=False,
                        )
                        image = resized[0].round_().clamp_(0, 255).to(torch.uint8)
                    if pixels is not None:
                        pixels[i] = image.cpu().numpy()
                    status[i] = DECODED
            rest = sorted(others)
            for i, (_, error, _) in zip(rest, pool.map(self.get, rest), strict=True):
                if error:
                    errors[i] = error
        return errors

    def flush(self) -> None:
        if isinstance(self._table, np.memmap):
            self._table.flush()

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """The pixels of ``indices`` (decoded files) as one new uint8 ``[K, C, H, W]`` array.

        From a cache file, rows are read with ``readinto`` in chunks of about ``GATHER_BYTES``
        and this process's mapping of the file is released first: its pages would otherwise
        count in the resident memory beside the copy (twice the decoded size at the peak).
        """
        out = np.empty((len(indices), *self.shape[1:]), np.uint8)
        pixels, _ = self.arrays()
        table = self._table
        row = int(np.prod(self.shape[1:]))
        step = max(1, GATHER_BYTES // (row + 1))
        if not isinstance(table, np.memmap):
            assert pixels is not None
            for start in range(0, len(indices), step):
                out[start : start + step] = pixels[indices[start : start + step]]
            return out
        path, offset = Path(str(table.filename)), table.offset
        table.flush()
        self._arrays = self._table = None
        del table, pixels
        flat = out.reshape(len(indices), row)
        with open(path, "rb") as f:
            start = 0
            while start < len(indices):
                # A run of consecutive rows is one read.
                first, count = int(indices[start]), 1
                while (
                    start + count < len(indices)
                    and count < step
                    and indices[start + count] == first + count
                ):
                    count += 1
                f.seek(offset + first * (row + 1))
                staging = np.empty((count, row + 1), np.uint8)
                f.readinto(memoryview(staging).cast("B"))
                flat[start : start + count] = staging[:, :row]
                start += count
        return out


def _cache_key(files: list[Path], size: tuple[int, int], channels: int, decoder: str = "") -> str:
    """The cache file's name: the files (paths, sizes, mtimes), the pixels' geometry and the
    decoder that made them (``decode_device`` decodes with torchvision: other pixels)."""
    head: list = [CACHE_FORMAT, DECODER, list(size), channels] + ([decoder] if decoder else [])
    digest = hashlib.sha256(json.dumps(head).encode())
    for f in files:
        try:
            st = f.stat()
            stamp = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError:  # gone since listed: decoding it reports it as unreadable
            stamp = "missing"
        digest.update(f"{f.resolve()}\0{stamp}\n".encode())
    return digest.hexdigest()[:24]


def usable_cache(directory: Path) -> Path | None:
    """``directory`` if decoded images can be cached there, else None after one warning: an
    unwritable cache (a read-only home, a full disk) only costs decoding again."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(
            f"warning: cannot write the image cache in {directory} ({reason}); decoding "
            "without it (set ZOO_CACHE_DIR to a writable folder to cache decoded images)",
            file=sys.stderr,
        )
        return None
    return directory


def _open_table(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The cache table at ``path``, created (zero-filled) when missing or damaged.

    A new table is written under a temporary name and linked into place, so other processes
    see either no file or a complete one; a process that loses the race uses the winner's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if path.exists():
            try:
                table = np.load(path, mmap_mode="r+")
                if table.shape == shape and table.dtype == np.uint8:
                    return table
            except (ValueError, OSError):
                pass  # damaged: replaced below
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape).flush()
            if path.exists():
                os.replace(tmp, path)  # a damaged or outdated table: replace it whole
            else:
                try:
                    os.link(tmp, path)  # fails if another process created it meanwhile
                except FileExistsError:
                    continue
        finally:
            Path(tmp).unlink(missing_ok=True)
    return np.load(path, mmap_mode="r+")


class StreamedFolder:
    """A map-style dataset over part of a folder: items ``(uint8 [C, H, W] tensor, label)``.

    An unreadable file is reported once and replaced by the next readable file of the split,
    so batches keep their size (and the processes of a distributed run stay in step).
    ``decoded`` counts, per worker, the files decoded rather than read from the cache, so a
    run can show that later epochs decode nothing; ``bad`` marks the unreadable files found
    (both in shared memory: without a cache on disk, each worker's status table is its own).
    """

    def __init__(self, cache: DecodedCache, indices: list[int], labels: list[int]) -> None:
        import torch

        self.cache = cache
        self.indices = indices
        self.labels = labels
        self.decoded = torch.zeros(65, dtype=torch.int64).share_memory_()
        self.bad = torch.zeros(len(indices), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        import torch
        from torch.utils.data import get_worker_info

        for offset in range(len(self.indices)):
            j = (i + offset) % len(self.indices)
            pixels, error, decoded = self.cache.get(self.indices[j])
            if decoded:
                worker = get_worker_info()
                self.decoded[0 if worker is None else 1 + worker.id % 64] += 1
            if error:
                self.bad[j] = True
                path = self.cache.files[self.indices[j]]
                print(f"warning: skipped unreadable image {path} ({error})", file=sys.stderr)
            if pixels is not None:
                return torch.from_numpy(np.array(pixels)), self.labels[j]
        raise ZooError("no readable image in this split")

    @property
    def paths(self) -> list[str]:
        """The file each item came from: an unreadable file's item is the next readable one's,
        as ``__getitem__`` returns it (so read this after the items were read)."""
        _, status = self.cache.arrays()
        bad = self.bad.tolist()
        readable = [not (bad[j] or status[i] == UNREADABLE) for j, i in enumerate(self.indices)]
        n = len(self.indices)
        source = list(range(n))
        if any(readable):
            following = None  # the next readable item, going round the end
            for j in reversed(range(2 * n)):
                if readable[j % n]:
                    following = j % n
                source[j % n] = following if following is not None else j % n
        return [str(self.cache.files[self.indices[k]]) for k in source]

    def unreadable(self) -> list[Path]:
        _, status = self.cache.arrays()
        bad = self.bad.tolist()
        return [
            self.cache.files[i]
            for j, i in enumerate(self.indices)
            if bad[j] or status[i] == UNREADABLE
        ]


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
    import torch

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

    streamed = len(files) * channels * image_size[0] * image_size[1] > max_memory_mb * 2**20
    if cache_dir is not None:
        cache_dir = usable_cache(cache_dir)
    if decode_device is not None and streamed and cache_dir is None:
        decode_device = None  # nowhere to keep what it decodes: loader workers decode
    cache = DecodedCache(
        files,
        image_size,
        channels,
        cache_dir,
        keep_pixels=not streamed,
        decode_device=decode_device,
    )
    if streamed:
        decoded = 0
        if decode_device is not None:  # the whole folder into the cache now, in batches
            decoded, _ = cache.decode_missing(workers or default_workers())
        train = StreamedFolder(cache, train_idx, [labels[i] for i in train_idx])
        train.decoded[0] += decoded  # counted in the first epoch, as set-up decoding is
        val = StreamedFolder(cache, val_idx, [labels[i] for i in val_idx]) if val_idx else None
        return DataSplits(train, val, classes, image_size, channels, skipped=special)

    _, errors = cache.decode_missing(workers or default_workers())
    status = np.array(cache.arrays()[1])  # a copy: gather() releases the cache's arrays
    skipped = [i for i in range(len(files)) if status[i] == UNREADABLE]
    for i in skipped:
        reason = errors.get(i, "unreadable when first decoded; the decoded cache remembers it")
        print(f"warning: skipped unreadable image {files[i]} ({reason})", file=sys.stderr)

    def split(indices: list[int]) -> ImageTensors | None:
        keep = np.array([i for i in indices if status[i] == DECODED], dtype=np.int64)
        if len(keep) == 0:
            return None
        return ImageTensors(
            torch.from_numpy(cache.gather(keep)),
            torch.from_numpy(np.asarray(labels, dtype=np.int64)[keep]),
            paths=[str(files[i]) for i in keep],
        )

    train = split(train_idx)
    if train is None:
        raise ZooError(f"no readable training images in {root}")
    return DataSplits(
        train,
        split(val_idx),
        classes,
        image_size,
        channels,
        skipped=special + [str(files[i]) for i in skipped],
    )
