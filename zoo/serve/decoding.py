"""Request bodies to pixels, off the event loop: the image's size is read from its header and
refused above ``--max-pixels`` before anything is decoded, then the image is decoded by the
training path's own decoder (``zoo.data.decoder.decode_image``: JPEG draft mode, EXIF
orientation, torch's antialiased resize), so a served image gets the pixels training saw."""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.file = status, message, file

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **({"file": self.file} if self.file else {})}


def decode(
    data: bytes, name: str | None, size: tuple[int, int], channels: int, max_pixels: int
) -> Any:
    """uint8 ``[C, H, W]`` pixels at ``size``, or a RequestError: 415 for bytes that are not an
    image PIL reads, 413 for an image over ``max_pixels`` (a decompression bomb: a small file
    that decodes to gigabytes), refused from its header before anything is decoded."""
    from PIL import Image, UnidentifiedImageError

    from zoo.data.decoder import ImageTooLarge, decode_image

    label = name or "the request body"
    if not data:
        raise RequestError(400, f"{label} is empty: send the image's bytes", name)
    try:
        return decode_image(data, size, channels, name=label, max_pixels=max_pixels)
    except ImageTooLarge as exc:
        pixels = exc.width * exc.height
        message = f"{label} is {exc.width}x{exc.height} ({pixels:,} pixels), over --max-pixels"
        raise RequestError(413, f"{message} {exc.limit:,}", name) from None
    except Image.DecompressionBombError:
        raise RequestError(413, f"{label} is too large an image", name) from None
    except UnidentifiedImageError:
        raise RequestError(415, f"{label} is not an image PIL can read", name) from None
    except Exception as exc:  # a truncated or damaged file: PIL fails while decoding
        message = f"{label} is not a readable image ({_first_line(exc)})"
        raise RequestError(415, message, name) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
