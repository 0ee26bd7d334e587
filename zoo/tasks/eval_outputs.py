"""What ``zoo eval`` writes: ``eval.json`` and its pictures (confusion matrix, training curves,
reliability diagram, top losses with their class activation maps).

``zoo eval`` and ``zoo report`` (which evaluates first when it finds no ``eval.json``) share it.
The pictures are written before ``eval.json``, which lists them under ``pictures``: a report
embeds only the pictures of the evaluation it shows, never a stale one left by an earlier run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.files.atomic import write_failed, write_output

# Top-loss images run through Grad-CAM this many at a time.
_CAM_BATCH = 32
# top_losses.png shows at most this many (eval.json lists all): a taller grid is unreadable.
GRID_MAX = 64


@dataclass
class EvalOptions:
    """The settings of one evaluation (``zoo eval``'s options)."""

    data: str | None = None
    split: str | None = None
    batch_size: int = 256
    device: str = "auto"
    precision: str = "auto"
    engine: str = "auto"
    workers: int | None = None
    plots: bool = True
    samples: bool = False
    top_losses: int = 16
    cam: bool = False
    cam_layer: str | None = None
    tta: str | None = None


@dataclass
class Outputs:
    """The report written to ``eval.json``, the files written, and notes for the user."""

    report: dict[str, Any]
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def evaluate(path: str, options: EvalOptions, out: str | None = None) -> Outputs:
    """Evaluate the model at ``path`` (a run or weights file) and write ``eval.json`` and the
    pictures to ``out`` (default: the weights' folder)."""
    from zoo.device.precision import check_precision
    from zoo.models import hub
    from zoo.models.engines import check_engine
    from zoo.models.loading import weights_path
    from zoo.tasks import cam, tta

    check_precision(options.precision)
    check_engine(options.engine)
    if options.top_losses < 0:
        raise ZooError(f"--top-losses must be 0 or more, got {options.top_losses}")
    if options.tta is not None:
        tta.check_mode(options.tta, auto=True)
    if options.cam_layer is not None and not options.cam:
        raise ZooError("--cam-layer chooses the layer of --cam; add --cam")
    if options.cam:
        if options.top_losses == 0:
            raise ZooError("--cam maps the top-loss images; give --top-losses N with N > 0")
        if not options.plots:
            raise ZooError("--cam draws its maps in top_losses.png; drop --no-plots")
        cam.require()
    file = weights_path(path)
    run_dir = file.parent
    if out is None and hub.is_hub_ref(path):  # never write into the Hugging Face cache
        out = f"{hub.parse_ref(path).repo_id.rpartition('/')[2]}-eval"
    target = Path(out) if out is not None else run_dir
    if target.exists() and not target.is_dir():
        raise ZooError(f"--out {target} is a file, not a directory")
    check_target(target, "--out" if out is not None else "the weights' folder")
    with _run_lock(target):
        return _evaluate(path, options, file, target)


def _evaluate(path: str, options: EvalOptions, file: Path, target: Path) -> Outputs:
    """``evaluate`` once the place to write is settled (and locked when it is a run)."""
    import torch

    from zoo.data.splits import default_workers, split_paths
    from zoo.device.placement import resolve_device
    from zoo.files import records
    from zoo.labeling.task import MULTI, task_of
    from zoo.models.engines import prepare
    from zoo.models.loading import load
    from zoo.tasks import cam, evaluation, insights, plots, tta

    run_dir = file.parent
    device = resolve_device(options.device)
    model = load(path, device=str(device), precision=options.precision)
    mode = None if options.tta is None else tta.resolve_mode(options.tta, model.info.config, path)
    amp_dtype = model.amp_dtype
    info = model.info
    layer = None
    if options.cam:
        sample = torch.zeros(1, info.in_chans, *info.image_size, device=device)
        layer = cam.find_target(model.net, sample, options.cam_layer)
    chosen = evaluation.eval_data(info, options.data, options.split, file)
    engine = prepare(model, options.engine, batch_size=options.batch_size, images=len(chosen.split))
    workers = default_workers() if options.workers is None else options.workers
    settings = dict(batch_size=options.batch_size, device=device, amp_dtype=amp_dtype)
    result = evaluation.run(model, chosen, workers=workers, **settings)
    report = evaluation.report(result, file, samples=options.samples)
    report["engine"] = engine.engine
    outputs = Outputs(report)
    multi = task_of(info) == MULTI
    if multi:
        from zoo.tasks import multilabel

        report["calibration"] = multilabel.calibration(
            result.logits, result.targets, list(info.classes)
        )
    else:
        report["calibration"] = insights.calibration(result.logits, result.targets)
    if mode is not None:
        augmented = evaluation.run(model, chosen, workers=workers, tta=mode, **settings)
        report["tta"] = (multilabel.tta_summary if multi else tta_summary)(augmented, mode)

    if multi:
        indices = multilabel.top_losses(result.logits, result.targets, info, options.top_losses)
    else:
        indices = insights.top_losses(result.logits, result.targets, options.top_losses)
    aligned = len(result.targets) == len(chosen.split)
    if indices and not aligned:
        outputs.notes.append(
            f"note: {len(chosen.split) - len(result.targets)} unreadable images were dropped "
            "from the split, so the top losses cannot be matched to their images"
        )
        indices = []
    paths = split_paths(chosen.split) if indices else None
    if multi:
        entries = multilabel.top_loss_entries(result.logits, result.targets, indices, info, paths)
    else:
        entries = insights.top_loss_entries(
            result.logits, result.targets, indices, list(info.classes), paths
        )
    report["top_losses"] = entries
    if options.top_losses and not entries and aligned:
        outputs.notes.append(
            "no wrong label sets: no top losses to show"
            if multi
            else "no misclassified images: no top losses to show"
        )
    if layer is not None:
        report["cam"] = {"method": "Grad-CAM", "layer": layer.name}

    pictures: dict[str, bytes] = {}
    if options.plots and not plots.available():
        outputs.notes.append(
            "note: matplotlib is not installed, so no plots: pip install 'zoo[plots]'"
        )
    elif options.plots:
        title = f"{report['arch']} on {report['data']} ({report['split']})"
        if multi:
            pictures["pr_curves.png"] = multilabel.pr_curves_png(
                result.logits, result.targets, info, title
            )
        else:
            pictures["confusion_matrix.png"] = plots.confusion_png(
                report["confusion_matrix"], report["classes"], title
            )
        try:
            history = records.history(run_dir)
        except records.Damaged as exc:
            outputs.notes.append(f"note: {exc}; no training curves")
            history = []
        if history:
            pictures["training_curves.png"] = plots.curves_png(history, report["arch"])
        pictures["calibration.png"] = plots.calibration_png(report["calibration"], title)
        if entries:
            shown = indices[:GRID_MAX]
            if len(indices) > GRID_MAX:
                outputs.notes.append(
                    f"note: top_losses.png shows the first {GRID_MAX} of the "
                    f"{len(indices)} top losses; eval.json lists them all"
                )
            images = evaluation.split_images(chosen.split, shown)
            if multi:
                worst = [info.classes.index(e["worst_class"]) for e in entries[: len(shown)]]
                predicted = worst
            else:
                predicted = result.logits[shown].argmax(dim=1).tolist()
            overlays = _cam_overlays(model, images, predicted, layer) if layer else None
            pictures["top_losses.png"] = plots.top_losses_png(
                entries[:GRID_MAX], [im.numpy() for im in images], overlays, f"top losses: {title}"
            )
    report["pictures"] = list(pictures)
    for name, data in pictures.items():
        write_output(target / name, data, "--out DIR")
    write_output(target / "eval.json", (json.dumps(report, indent=2) + "\n").encode(), "--out DIR")
    outputs.written = [target / "eval.json", *(target / name for name in pictures)]
    if target == run_dir:
        outputs.written += _card(run_dir, outputs.notes)
    return outputs


# What ``zoo eval`` writes: the report and every picture it may draw.
WRITES = (
    "eval.json",
    "confusion_matrix.png",
    "pr_curves.png",
    "training_curves.png",
    "calibration.png",
    "top_losses.png",
)


def check_target(target: Path, option: str) -> None:
    """Refuse, before anything is evaluated, a folder where ``zoo eval`` would replace a file
    it did not write: outside a zoo run, ``eval.json`` and the pictures are replaced only when
    an earlier ``zoo eval`` wrote them."""
    from zoo.tasks.plots import drawn_by_zoo
    from zoo.train import rundir

    if not target.is_dir() or rundir.started_run(target):
        return
    for name in WRITES:
        path = target / name
        if not (path.exists() or path.is_symlink()):
            continue
        ours = _eval_json_by_zoo(path) if name == "eval.json" else drawn_by_zoo(path)
        if not ours or path.is_symlink():
            raise ZooError(
                f"{option} {target} holds {name}, which zoo eval did not write; write the "
                "evaluation elsewhere with --out DIR (a new or empty folder)"
            )


def _eval_json_by_zoo(path: Path) -> bool:
    """Whether ``path`` is an ``eval.json`` that zoo eval wrote (a JSON object with its keys)."""
    if not path.is_file():
        return False
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    keys = {"model", "arch", "per_class"}
    return isinstance(report, dict) and (
        keys | {"confusion_matrix"} <= set(report) or keys | {"map"} <= set(report)
    )


@contextlib.contextmanager
def _run_lock(target: Path) -> Iterator[None]:
    """Hold a zoo run's lock while its evaluation is written into it: a run that a process
    is still training is refused (its weights and card are about to change)."""
    from zoo.train import rundir

    if not rundir.started_run(target):
        yield
        return
    try:
        lock = rundir.RunLock.acquire(target, what=f"zoo eval: the run {target}")
    except rundir.Unwritable as exc:
        raise ZooError(f"{exc}; choose another place with --out DIR", exit_code=1) from None
    try:
        yield
    finally:
        lock.release()


def _card(run_dir: Path, notes: list[str]) -> list[Path]:
    """Rewrite a zoo run's model card with the evaluation it now holds."""
    from zoo.models import card
    from zoo.train.rundir import holds_run

    if not holds_run(run_dir) or not (run_dir / "config.toml").is_file():
        return []
    try:
        written = card.write(run_dir)
    except OSError as exc:
        raise write_failed(run_dir / card.FILE, exc, "--out DIR") from None
    if written is None:
        notes.append(f"note: {run_dir / card.FILE} was not written by zoo: left as it is")
        return []
    return [written]


def tta_summary(augmented: Any, mode: str) -> dict[str, Any]:
    """The metrics of an evaluation with test-time augmentation, for ``eval.json``'s ``tta``."""
    from zoo.labeling.metrics import from_confusion
    from zoo.tasks.insights import calibration
    from zoo.tasks.tta import view_count

    m = from_confusion(augmented.confusion, augmented.info.classes)
    return {
        "mode": mode,
        "views": view_count(mode),
        "accuracy": m["accuracy"],
        "top_k_accuracy": augmented.top_k_accuracy,
        "loss": augmented.loss,
        "macro_f1": m["f1"],
        "ece": calibration(augmented.logits, augmented.targets)["ece"],
    }


def _cam_overlays(model: Any, images: list[Any], predicted: list[int], layer: Any) -> list[Any]:
    """Grad-CAM of each top-loss image for its predicted class, blended over the image."""
    import torch

    from zoo.tasks import cam

    overlays = []
    for start in range(0, len(images), _CAM_BATCH):
        batch = torch.stack(images[start : start + _CAM_BATCH])
        maps = cam.activation_maps(
            model.net, model.preprocess(batch), predicted[start : start + _CAM_BATCH], layer
        )
        overlays += [cam.overlay(im.numpy(), m) for im, m in zip(batch, maps, strict=True)]
    return overlays
