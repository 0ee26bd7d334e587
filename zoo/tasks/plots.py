"""PNG figures for a run: the confusion matrix, the training curves, the top losses and the
reliability diagram; the loss against the learning rate of ``zoo lr-find``; and the accuracy
against the throughput of ``zoo probe``'s candidates.

matplotlib is optional (``pip install 'zoo[plots]'``). Figures are drawn on an Agg canvas
without pyplot, so nothing global (the backend, open figures) changes in the caller's process.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

# Annotating every cell stays legible up to about this many classes.
_ANNOTATE_MAX = 30


def available() -> bool:
    """Whether matplotlib can be imported (it is an optional dependency)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# The PNG text chunk that marks a picture zoo drew: zoo replaces its own pictures, never others.
SOFTWARE = "zoo"


def png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": SOFTWARE})
    return buffer.getvalue()


def drawn_by_zoo(path: Path) -> bool:
    """Whether ``path`` is a PNG file zoo drew (its ``Software`` text chunk says so); a
    special file is never opened."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get("Software") == SOFTWARE
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def confusion_png(matrix: list[list[int]], classes: list[str], title: str = "") -> bytes:
    """Counts in each cell, coloured by the share of the true class (the row), so rare classes
    are as readable as frequent ones."""
    import numpy as np

    cm = np.asarray(matrix, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(classes)
    side = min(4 + 0.45 * k, 40)
    fig = figure(side + 1.5, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ticks = list(range(k))
    ax.set_xticks(ticks, labels=classes, rotation=90 if k > 10 else 0)
    ax.set_yticks(ticks, labels=classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    if k <= _ANNOTATE_MAX:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=color)
    return png(fig)


# Panels of the training curves: title and the metrics.jsonl keys drawn in it.
CURVE_PANELS = (
    ("loss", ("train_loss", "val_loss", "ema_val_loss")),
    ("accuracy and F1", ("train_accuracy", "val_accuracy", "val_f1", "ema_val_accuracy")),
    ("learning rate", ("lr",)),
)


def compare_png(runs: list[Any], metric: str) -> bytes:
    """Each run's curve of one metric per epoch (``zoo.tasks.runs.RunInfo``: its ``name`` and
    ``history``), overlaid on one set of axes, for ``zoo runs compare``."""
    from matplotlib.ticker import MaxNLocator

    fig = figure(7.5, 4.5)
    ax = fig.add_subplot()
    for run in runs:
        points = [
            (r["epoch"], float(r[metric]))
            for r in run.history
            if "epoch" in r and _numeric(r.get(metric))
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, label=run.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{metric} per epoch")
    return png(fig)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def curves_png(history: list[dict[str, Any]], title: str = "") -> bytes:
    """Loss, accuracy/F1 and learning rate per epoch."""
    from matplotlib.ticker import MaxNLocator

    panels = [
        (name, [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in history)])
        for name, keys in CURVE_PANELS
    ]
    panels = [(name, keys) for name, keys in panels if keys]
    fig = figure(4.5 * max(len(panels), 1), 3.8)
    for n, (name, keys) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), n)
        for key in keys:
            points = [
                (r["epoch"], r[key])
                for r in history
                if isinstance(r.get(key), (int, float)) and "epoch" in r
            ]
            xs, ys = zip(*points, strict=True) if points else ((), ())
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, label=key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return png(fig)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def top_losses_png(
    entries: list[dict[str, Any]],
    images: list[Any],
    overlays: list[Any] | None = None,
    title: str = "",
) -> bytes:
    """A grid of the top-loss images, each captioned with its true and predicted class, the
    predicted class's probability and its file name (or index). With ``overlays`` (Grad-CAM
    pictures), each image is shown beside its map.

    ``images`` are uint8 ``[C, H, W]`` arrays; ``overlays`` uint8 ``[H, W, 3]``.
    """
    import numpy as np

    n = len(entries)
    cols = min(n, 4 if overlays is None else 3) or 1
    rows = -(-n // cols) or 1
    cell_w = 2.4 if overlays is None else 3.6
    fig = figure(cell_w * cols, 2.7 * rows + (0.4 if title else 0))
    for k, (entry, image) in enumerate(zip(entries, images, strict=True)):
        ax = fig.add_subplot(rows, cols, k + 1)
        picture = np.asarray(image).transpose(1, 2, 0)
        if picture.shape[2] == 1:
            picture = np.repeat(picture, 3, axis=2)
        if overlays is not None:
            gap = np.full((picture.shape[0], max(1, picture.shape[1] // 16), 3), 255, np.uint8)
            picture = np.concatenate([picture[..., :3], gap, overlays[k]], axis=1)
        ax.imshow(picture, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        name = Path(entry["path"]).name if "path" in entry else f"#{entry['index']}"
        ax.set_title(
            f"true {_short(entry['true'], 14)} → {_short(entry['predicted'], 14)}\n"
            f"p={entry['probability']:.2f}  {_short(name, 24)}",
            fontsize="small",
        )
    if title:
        fig.suptitle(title)
    return png(fig)


def calibration_png(calibration: dict[str, Any], title: str = "") -> bytes:
    """The reliability diagram: each confidence bin's accuracy against its mean confidence
    (on the diagonal when calibrated), above the share of images in each bin."""
    import numpy as np

    bins = int(calibration["bins"])
    edges = np.linspace(0, 1, bins + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, 1 / bins
    accuracy = np.array([np.nan if a is None else a for a in calibration["accuracy"]])
    confidence = np.array([np.nan if c is None else c for c in calibration["confidence"]])
    count = np.asarray(calibration["count"], dtype=np.float64)
    fig = figure(5, 5.6)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1))
    ax = fig.add_subplot(grid[0])
    filled = ~np.isnan(accuracy)
    ax.bar(centers[filled], accuracy[filled], width=width, edgecolor="black", label="accuracy")
    ax.bar(
        centers[filled],
        (confidence - accuracy)[filled],
        bottom=accuracy[filled],
        width=width,
        facecolor="none",
        edgecolor="tab:red",
        hatch="//",
        label="gap to the mean confidence",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(
        (f"{title}\n" if title else "")
        + f"expected calibration error {calibration['ece']:.4f} ({bins} bins)"
    )
    hist = fig.add_subplot(grid[1], sharex=ax)
    total = max(count.sum(), 1)
    hist.bar(centers, count / total, width=width, color="grey", edgecolor="black")
    hist.set_xlabel("confidence (top-1 probability)")
    hist.set_ylabel("share of images")
    return png(fig)


def lr_find_png(lrs: list[float], losses: list[float], suggested: float | None) -> bytes:
    """The smoothed loss against the learning rate (log scale), the suggestion marked."""
    fig = figure(6.5, 4.2)
    ax = fig.add_subplot()
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.grid(alpha=0.3, which="both")
    low = min(losses)
    ax.set_ylim(low - 0.05 * abs(low), max(losses[0], low) * 1.5)  # the divergence off the top
    if suggested is not None:
        nearest = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / suggested)))
        y = losses[nearest]
        ax.plot([suggested], [y], marker="o", color="red", linestyle="none")
        ax.axvline(suggested, color="red", alpha=0.4, linestyle="--")
        ax.annotate(
            f"suggested {suggested:.2e}",
            (suggested, y),
            textcoords="offset points",
            xytext=(8, 8),
            color="red",
        )
    ax.set_title("learning-rate range test")
    return png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both speed (x) and accuracy (y), fastest
    first: for each, nothing at least as fast is more accurate."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def probe_png(rows: list[dict[str, Any]], title: str = "") -> bytes:
    """Each scored candidate's validation accuracy (linear probe; for multi-label data its
    mAP) against its images per second (log scale), labelled, with the Pareto front (the best
    score at each speed) drawn and its points marked."""
    from zoo.labeling.task import MULTI

    scored = [r for r in rows if r.get("status") == "ok" and r.get("images_per_second")]
    multi = any(r.get("task") == MULTI for r in scored)
    key, what = ("map", "mAP") if multi else ("accuracy", "accuracy")
    fig = figure(7.5, 5.0)
    ax = fig.add_subplot()
    points = [(float(r["images_per_second"]), float(r[key])) for r in scored]
    front = pareto_front(points)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ax.scatter(xs, ys, color="grey", zorder=2, label="candidates")
    if front:
        fx, fy = [points[i][0] for i in front], [points[i][1] for i in front]
        ax.step(fx, fy, where="post", color="tab:red", alpha=0.6, zorder=1)
        ax.scatter(fx, fy, color="tab:red", zorder=3, label="Pareto front")
    for r, (x, y) in zip(scored, points, strict=True):
        ax.annotate(
            _short(str(r["name"]), 32), (x, y), textcoords="offset points", xytext=(5, 4),
            fontsize=8,
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("backbone images per second on this machine (log scale)")
    probe = "one-vs-rest linear probe" if multi else "linear probe"
    ax.set_ylabel(f"validation {what} ({probe})")
    ax.grid(alpha=0.3, which="both")
    if scored:
        ax.legend(loc="lower left")
        low, high = min(ys), max(ys)
        pad = max(0.02, 0.1 * (high - low))
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad) + 0.01)
        ax.set_xlim(min(xs) / 1.6, max(xs) * 2.2)  # room for the labels
    ax.set_title(title or f"zoo probe: {what} against speed")
    return png(fig)
