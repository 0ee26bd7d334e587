"""The decoded cache: every image decoded once at the target size into one memory-mapped
``.npy`` file keyed by the file list, sizes and mtimes (or by a record source's ``stamp``), so
later epochs and later runs skip decoding. Shared by every data source.

The images are a list of files, or ``Records``: any sequence whose items are encoded bytes (or
files) with a ``name(i)`` for messages and a ``stamp()`` that changes with the data (a Hugging
Face dataset's fingerprint, say), so a reader of records caches as a folder does.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from zoo.data.decoder import DECODER, decode_image, open_regular

# Bumped when the cache file's layout changes.
CACHE_FORMAT = 2
# Bytes of cache rows read at a time when a folder is loaded into memory.
GATHER_BYTES = 16 * 2**20
# JPEGs decoded at a time with ``decode_device`` (torchvision's batched decode_jpeg).
DECODE_BATCH = 128
# Per-file status in the cache.
PENDING, DECODED, UNREADABLE = 0, 1, 2


class Records(Protocol):
    """Images that are not files of their own: ``len``, ``records[i]`` (encoded bytes or a
    file), ``name(i)`` naming record ``i`` in messages, ``stamp()`` keying the cache."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> bytes | Path: ...

    def name(self, index: int) -> str: ...

    def stamp(self) -> str: ...


def item_name(items: Sequence[Any] | Records, index: int) -> str:
    """How messages and ``paths`` name image ``index``: a file's path, a record's name."""
    namer = getattr(items, "name", None)
    return namer(index) if callable(namer) else str(items[index])


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
        files: Sequence[Path] | Records,
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
            image = decode_image(
                self.files[index], self.shape[2:], self.shape[1], item_name(self.files, index)
            )
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
        jpegs = [
            i
            for i in todo
            if isinstance(self.files[i], Path) and self.files[i].suffix.lower() in (".jpg", ".jpeg")
        ]
        others = set(todo) - set(jpegs)

        def read(i: int) -> torch.Tensor | None:
            """The file's bytes; None for a file that cannot be read (a dangling link, a FIFO):
            ``decode_image`` then says why."""
            try:
                with open_regular(self.files[i]) as f:
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


def _cache_key(
    files: Sequence[Path] | Records, size: tuple[int, int], channels: int, decoder: str = ""
) -> str:
    """The cache file's name: the files (paths, sizes, mtimes) or the records' stamp, the
    pixels' geometry and the decoder that made them (``decode_device`` decodes with
    torchvision: other pixels)."""
    head: list = [CACHE_FORMAT, DECODER, list(size), channels] + ([decoder] if decoder else [])
    digest = hashlib.sha256(json.dumps(head).encode())
    stamp = getattr(files, "stamp", None)
    if callable(stamp):
        digest.update(f"records\0{len(files)}\0{stamp()}".encode())
        return digest.hexdigest()[:24]
    for f in files:
        try:
            st = f.stat()
            stamp_ = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError:  # gone since listed: decoding it reports it as unreadable
            stamp_ = "missing"
        digest.update(f"{f.resolve()}\0{stamp_}\n".encode())
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
