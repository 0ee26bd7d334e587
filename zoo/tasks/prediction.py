"""Predicting classes for image files: collect the files in the order given, decode them at the
model's input size, and run the model batch by batch. A file that cannot be decoded becomes an
error entry instead of stopping the others.

What a prediction looks like as JSON (``zoo predict --json``, ``POST /predict`` of ``zoo
serve``), as CSV and as a table is the output of the run's task (``output_for``): single-label
runs answer each image with its top-k classes; another task registers its own output in
``OUTPUTS``, and the commands that print or serve predictions do not change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zoo.errors import ZooError

if TYPE_CHECKING:
    import torch

    from zoo.models.weights import ModelInfo


@dataclass
class Prediction:
    """One image's answer (what its run's output computes: for single-label runs, the top-k
    ``(class, probability)`` pairs), or why it could not be read. With test-time augmentation,
    ``answer`` is the averaged prediction and ``plain`` the prediction on the image alone.
    ``path`` is the file (an upload's name when served; None for a raw request body)."""

    path: Path | str | None
    answer: Any = None
    error: str | None = None
    plain: Any = None


class Output(Protocol):
    """How a task turns a model's logits into answers and shows them. ``zoo predict`` and
    ``zoo serve`` only call these, so a task with another shape of answer needs no change to
    either."""

    task: str
    tta: str | None  # the test-time augmentation the answers average over (None: none)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> the probabilities the answers are made of (float32)."""
        ...

    def answers(self, probabilities: torch.Tensor) -> list[Any]:
        """A batch's probabilities -> each image's answer."""
        ...

    def record(self, prediction: Prediction) -> dict[str, Any]:
        """One image as JSON: ``zoo predict --json``'s entry and ``POST /predict``'s."""
        ...

    def csv_header(self) -> list[str]: ...

    def csv_row(self, prediction: Prediction) -> list[str]: ...

    def table_columns(self) -> list[tuple[str, str]]:
        """``(name, justify)`` of each column of ``zoo predict``'s table."""
        ...

    def table_row(self, prediction: Prediction) -> list[str]: ...


class SingleLabel:
    """One class per image: softmax probabilities, each image answered by its top-k
    ``(class, probability)`` pairs (probabilities rounded to 6 decimals)."""

    task = "single-label"

    def __init__(self, classes: list[str], top_k: int = 5, tta: str | None = None) -> None:
        self.classes = list(classes)
        self.k = max(1, min(top_k, len(self.classes)))
        self.tta = tta

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)

    def answers(self, probabilities: torch.Tensor) -> list[list[tuple[str, float]]]:
        values, indices = probabilities.topk(self.k, dim=1)
        return [
            [(self.classes[i], round(p, 6)) for p, i in zip(vs, ix, strict=True)]
            for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def record(self, prediction: Prediction) -> dict[str, Any]:
        path = None if prediction.path is None else str(prediction.path)
        out: dict[str, Any] = {"path": path, "predictions": _pairs(prediction.answer)}
        if self.tta:
            out["tta"] = self.tta
            out["without_tta"] = _pairs(prediction.plain)
        out["error"] = prediction.error
        return out

    def csv_header(self) -> list[str]:
        pairs = [f"{n}_{i}" for i in range(1, self.k + 1) for n in ("class", "probability")]
        tta = ["class_without_tta", "probability_without_tta"] if self.tta else []
        return ["path", *pairs, *tta, "error"]

    def csv_row(self, prediction: Prediction) -> list[str]:
        cells = [str(c) for pair in prediction.answer or [] for c in pair] or [""] * (2 * self.k)
        if self.tta:
            cells += [str(c) for c in prediction.plain[0]] if prediction.plain else ["", ""]
        return [str(prediction.path or ""), *cells, prediction.error or ""]

    def table_columns(self) -> list[tuple[str, str]]:
        columns = [("file", "left"), ("class", "left"), ("probability", "right"), ("next", "left")]
        return columns + ([("without tta", "left")] if self.tta else [])

    def table_row(self, prediction: Prediction) -> list[str]:
        tta = [""] if self.tta else []
        if prediction.error:
            return [str(prediction.path or ""), "unreadable", "", prediction.error, *tta]
        (best, p), rest = prediction.answer[0], prediction.answer[1:]
        others = ", ".join(f"{c} {q:.4f}" for c, q in rest)
        if self.tta and prediction.plain:
            tta = [f"{prediction.plain[0][0]} {prediction.plain[0][1]:.4f}"]
        return [str(prediction.path or ""), best, f"{p:.4f}", others, *tta]


def _pairs(answer: list[tuple[str, float]] | None) -> list[dict[str, Any]]:
    return [{"class": c, "probability": p} for c, p in answer or []]


# The output of each task, by the name a run records under ``task`` in its settings.
OUTPUTS: dict[str, Callable[..., Output]] = {"single-label": SingleLabel}


def task_of(info: ModelInfo) -> str:
    """The run's task: ``task`` in the settings it was trained with (single-label when absent,
    as every run before multi-label runs existed)."""
    return str((info.config or {}).get("task") or "single-label")


def output_for(info: ModelInfo, top_k: int = 5, tta: str | None = None) -> Output:
    """The output of the run's task, answering with up to ``top_k`` classes."""
    task = task_of(info)
    if task not in OUTPUTS:
        known = ", ".join(sorted(OUTPUTS))
        raise ZooError(f"this zoo cannot predict with a {task!r} model (it knows {known})")
    return OUTPUTS[task](list(info.classes), top_k=top_k, tta=tta)


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
    from zoo.tasks.tta import TTA

    with torch.inference_mode():
        plain, averaged = TTA(model, output.tta).probabilities(model.preprocess(images))
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
