"""Predicting classes for image files: collect the files in the order given, decode them at the
model's input size, and run the model batch by batch. A file that cannot be decoded becomes an
error entry instead of stopping the others."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


@dataclass
class Prediction:
    """One file's top-k ``(class, probability)`` pairs, or why it could not be read. With
    test-time augmentation, ``top`` is the averaged prediction and ``plain`` the prediction on
    the image alone."""

    path: Path
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    plain: list[tuple[str, float]] | None = None


def collect_files(paths: list[Path]) -> list[Path]:
    """Files in the order given; a directory contributes its image files (by extension,
    recursively, sorted; image-named FIFOs, sockets and dangling links too, to be reported).
    A file named explicitly is kept whatever its extension, so a non-image file is reported
    rather than silently dropped."""
    from zoo.data.folder import IMAGE_EXTENSIONS, scan_images

    files: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            images, special = scan_images(path)
            found = sorted(images + [p for p, _ in special])
            if not found:
                kinds = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
                raise ZooError(f"{path} holds no image files ({kinds})")
            files.extend(found)
        elif path.exists() or path.is_symlink():  # a dangling link: reported as unreadable
            files.append(path)
        else:
            raise ZooError(f"{path} does not exist")
    return files


def _decode(path: Path, size: tuple[int, int], channels: int) -> tuple[Any, str | None]:
    from zoo.data.folder import decode_image

    try:
        return decode_image(path, size, channels), None
    except Exception as exc:  # PIL raises many exception types for corrupt or foreign files
        return None, f"not a readable image ({type(exc).__name__}: {exc})"


def _top(probs: Any, classes: list[str], k: int) -> list[list[tuple[str, float]]]:
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [
        [(classes[i], round(p, 6)) for p, i in zip(vs, ix, strict=True)]
        for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def _predict_tta(model: Any, images: Any, top_k: int, mode: str) -> list[Prediction]:
    """Averaged and plain top-k of a batch (paths filled in by the caller)."""
    import torch

    from zoo.tasks.tta import TTA

    with torch.inference_mode():
        plain, averaged = TTA(model, mode).probabilities(model.preprocess(images))
    tops, plains = _top(averaged, model.classes, top_k), _top(plain, model.classes, top_k)
    return [Prediction(Path(), t, plain=p) for t, p in zip(tops, plains, strict=True)]


def predict_files(
    model: Any,
    files: list[Path],
    *,
    top_k: int,
    batch_size: int,
    workers: int,
    tta: str | None = None,
) -> Iterator[Prediction]:
    """Predictions for ``files`` in order, with ``model`` a ``zoo.models.inference.LoadedModel``;
    with ``tta`` (a ``zoo.tasks.tta`` mode), averaged over the augmented views.

    Files are decoded by a thread pool (PIL releases the GIL) one batch at a time, so memory
    stays bounded by the batch size.
    """
    import numpy as np
    import torch

    size, channels = model.info.image_size, model.info.in_chans
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            decoded = list(pool.map(lambda f: _decode(f, size, channels), chunk))
            good = [pixels for pixels, error in decoded if error is None]
            images = torch.from_numpy(np.stack(good)) if good else None
            if images is None:
                found: list[Prediction] = []
            elif tta is None:
                found = [Prediction(Path(), top) for top in model.predict(images, top_k)]
            else:
                found = _predict_tta(model, images, top_k, tta)
            results = iter(found)
            for path, (_, error) in zip(chunk, decoded, strict=True):
                if error:
                    yield Prediction(path, error=error)
                else:
                    result = next(results)
                    result.path = path
                    yield result
