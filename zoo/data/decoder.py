"""The one image decoder: a file (or, for records, its bytes) to uint8 ``[C, H, W]`` at the
target size, upright as its EXIF orientation says; and image sizes read from headers alone.
Training, evaluation and prediction of every data source decode through here.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.files.reading import open_regular

# Bumped when decode_image's output changes, so caches of the old pixels are not reused
# (3: EXIF orientation applied).
DECODER = 3


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


class ImageTooLarge(ValueError):
    """An image over the number of pixels its decoder was allowed (found from its header)."""

    def __init__(self, path: Path | str, width: int, height: int, limit: int) -> None:
        super().__init__(f"{path} is {width}x{height} ({width * height:,} pixels), over {limit:,}")
        self.width, self.height, self.limit = width, height, limit


def decode_image(
    path: Path | bytes,
    size: tuple[int, int],
    channels: int,
    name: str | None = None,
    max_pixels: int = 0,
) -> np.ndarray:
    """Decode one image file (or an encoded image's bytes, ``name`` naming it in messages) to
    uint8 ``[C, H, W]`` at ``size`` (aspect ratio squashed, as Keras' ``target_size`` does),
    upright as its EXIF orientation says (as photo viewers show it). Training, evaluation and
    prediction of every source decode through here.

    PIL decodes (JPEGs in draft mode: libjpeg scales the DCT down while decoding when the image
    is at least twice the target), and torch's uint8 kernel does the antialiased bilinear resize
    on the channels-last pixels: PIL's resize result to within one level, several times faster.
    benchmarks/decode.py compares this with torchvision.io, whose decoders are deprecated.
    ``max_pixels`` (0: no limit) refuses a larger image from its header, before decoding
    (``ImageTooLarge``): ``zoo serve`` decodes request bodies so.
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageOps

    encoded = isinstance(path, (bytes, bytearray, memoryview))
    label = name or ("<image bytes>" if encoded else str(path))
    with (
        io.BytesIO(path) if encoded else open_regular(path) as f,  # type: ignore[arg-type]
        _open_image(f, label) as im,
    ):
        if 0 < max_pixels < im.size[0] * im.size[1]:
            raise ImageTooLarge(label, *im.size, max_pixels)
        _check_bomb(label, im)
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


def typical_size_of(
    files: Sequence[Path | bytes], cap: tuple[int, int], sample: int = 256
) -> tuple[int, int] | None:
    """A training size for images (files, or encoded bytes): their median height and width (of
    up to ``sample`` evenly spaced ones, read from their headers only), each rounded up to a
    multiple of 8 and capped at ``cap``. None when no image can be read.

    Small images are then not blown up to 224 px (11 minutes and 4 GB instead of a minute for
    25-px scans), nor large ones trained at full size.
    """
    from PIL import Image

    step = max(1, len(files) // sample)
    heights, widths = [], []
    for path in files[::step][:sample]:
        try:
            encoded = isinstance(path, (bytes, bytearray, memoryview))
            with io.BytesIO(path) if encoded else open_regular(path) as f, Image.open(f) as im:
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
