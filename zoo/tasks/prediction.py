"""Predicting classes for image files: collect the files in the order given, decode them at the
model's input size, and run the model batch by batch. A file that cannot be decoded becomes an
error entry instead of stopping the others.

What a prediction looks like as JSON (``zoo predict --json``, ``POST /predict`` of ``zoo
serve``), as CSV and as a table is the output of the run's task (``zoo.labeling.outputs``), so
the commands that print or serve predictions never ask which task a run has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError
from zoo.labeling.outputs import Output, Prediction

if TYPE_CHECKING:
    import torch


def collect_files(paths: list[Path]) -> list[Path]:
    """Files in the order given; a directory contributes its image files (by extension,
    recursively, sorted; image-named FIFOs, sockets and dangling links too, to be reported), a
    table (.csv, .tsv, .parquet) the files of its image column, in row order.
    A file named explicitly is kept whatever its extension, so a non-image file is reported
    rather than silently dropped."""
    from zoo.data.listing import IMAGE_EXTENSIONS, scan_images
    from zoo.data.table import SUFFIXES, read_table

    files: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.suffix.lower() in SUFFIXES and path.is_file():  # a table: its image column
            files.extend(read_table(path, need_label=False).images)
        elif path.is_dir():
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
    from zoo.data.decoder import decode_image

    try:
        return decode_image(path, size, channels), None
    except Exception as exc:  # PIL raises many exception types for corrupt or foreign files
        return None, f"not a readable image ({type(exc).__name__}: {exc})"


def answer_images(model: Any, output: Output, images: torch.Tensor) -> list[Prediction]:
    """The answers for a batch of decoded uint8 ``[B, C, H, W]`` images (paths left to the
    caller): ``zoo predict``'s and ``zoo serve``'s forward pass. With the output's ``tta``, the
    answers average over the augmented views and ``plain`` holds those of the image alone."""
    import torch

    if output.tta is None:
        return [Prediction(None, a) for a in output.answers(output.activate(model.logits(images)))]
    from zoo.labeling.task import task_named
    from zoo.tasks.tta import TTA

    with torch.inference_mode():
        tta = TTA(model, output.tta, task_named(output.task))
        plain, averaged = tta.probabilities(model.preprocess(images))
    pairs = zip(output.answers(averaged), output.answers(plain), strict=True)
    return [Prediction(None, answer, plain=p) for answer, p in pairs]


def predict_files(
    model: Any,
    files: list[Path],
    *,
    output: Output,
    batch_size: int,
    workers: int,
    prefetch: int = 2,
) -> Iterator[Prediction]:
    """Predictions for ``files`` in order, with ``model`` a ``zoo.models.inference.LoadedModel``
    and ``output`` its task's output (``output_for``), yielded batch by batch as they are
    ready; with the output's ``tta`` (a ``zoo.tasks.tta`` mode), averaged over the augmented
    views.

    A thread pool decodes the files (PIL releases the GIL, and the resize is torch's uint8
    kernel) up to ``prefetch`` batches ahead of the batch the model is running, so decoding
    overlaps the forward passes; memory stays bounded by ``(prefetch + 1) * batch_size``
    decoded images.
    """
    return _predict(model, files, output, batch_size, workers, prefetch)


def _predict(
    model: Any,
    files: list[Path],
    output: Output,
    batch_size: int,
    workers: int,
    prefetch: int,
) -> Iterator[Prediction]:
    size, channels = model.info.image_size, model.info.in_chans
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    threads = min(max(1, workers), len(files) // 2)
    if threads < 2:  # a pool for a handful of images costs more than it saves
        for chunk in batches:
            decoded = [_decode(f, size, channels) for f in chunk]
            yield from _predict_batch(model, chunk, decoded, output)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zoo-decode")
    queue: deque[tuple[list[Path], list[Future]]] = deque()
    ahead = iter(batches)
    try:
        for chunk in ahead:
            queue.append((chunk, [pool.submit(_decode, f, size, channels) for f in chunk]))
            if len(queue) <= prefetch:
                continue
            done, futures = queue.popleft()
            yield from _predict_batch(model, done, [f.result() for f in futures], output)
        while queue:
            done, futures = queue.popleft()
            yield from _predict_batch(model, done, [f.result() for f in futures], output)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _predict_batch(
    model: Any,
    chunk: list[Path],
    decoded: list[tuple[Any, str | None]],
    output: Output,
) -> Iterator[Prediction]:
    import numpy as np
    import torch

    good = [pixels for pixels, error in decoded if error is None]
    found = answer_images(model, output, torch.from_numpy(np.stack(good))) if good else []
    results = iter(found)
    for path, (_, error) in zip(chunk, decoded, strict=True):
        if error:
            yield Prediction(path, error=error)
        else:
            result = next(results)
            result.path = path
            yield result
