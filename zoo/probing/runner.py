"""The probe's loop: candidates in order, each one's features from the cache or the backbone,
scored, and recorded before the next starts. Single-label data is scored by
``zoo.probing.linear`` and ranked by accuracy; multi-label data by ``zoo.probing.multilabel``,
ranked by mAP (each row says its ``task``).

A candidate that fails (weights not in the cache offline, a network error, a network that
cannot take the input) becomes a row with a one-line reason, and the probe goes on. With a
``--budget`` (counted from the first candidate's start), no candidate after this process's
first starts once the time is spent; those left are rows that say so. ``probe.json`` in the
output folder is rewritten after every candidate, so an interrupted probe
continues with ``--resume``: the candidates it scored are kept, the others run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    from zoo.probing.candidates import Candidate, Selection
    from zoo.probing.data import ProbeData
    from zoo.probing.settings import ProbeSettings


class Reporter:
    """Receives the probe's events and shows nothing (library use); the CLI draws them."""

    def selected(self, selection: Selection) -> None:
        pass

    def start(self, index: int, total: int, candidate: Candidate, images: int) -> None:
        pass

    def advance(self, images: int) -> None:
        pass

    def finished(self, row: dict[str, Any]) -> None:
        pass


@dataclass
class ProbeResult:
    """The ranked rows (scored first, best first; then failed and skipped ones), the best row
    (under ``--min-img-s`` when given; None when no row qualifies) and what the limits left
    out."""

    settings: ProbeSettings
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    left_out: list[str] = field(default_factory=list)


def probe(
    settings: ProbeSettings,
    *,
    out: Path | None = None,
    done: list[dict[str, Any]] | None = None,
    reporter: Reporter | None = None,
) -> tuple[ProbeResult, list[Path], list[str]]:
    """Run a probe, writing into ``out`` (None: nothing but the feature cache); ``done``: the
    rows of the earlier probe in ``out`` that ``--resume`` continues. Returns the result, the
    files written and notes. Bad input fails before anything is written; one process at a
    time writes a probe folder (the lock zoo train's run folders use)."""
    from zoo.probing import outputs

    if out is None:
        return run(settings, reporter=reporter, done=done), [], []
    if done is None and (out / outputs.RECORD).is_file():
        raise ZooError(
            f"--out {out} holds an earlier probe; continue it with --resume {out}, or choose "
            "another --out"
        )
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {out} is a file, not a directory")
    locks: list[Any] = []

    def claim() -> None:
        from zoo.train.rundir import RunLock

        locks.append(RunLock.acquire(out, resume=done is not None))

    try:
        result = run(
            settings,
            reporter=reporter,
            done=done,
            record=outputs.Record(out, settings),
            begin=claim,
        )
        written, notes = outputs.write(result, out)
    finally:
        for lock in locks:
            lock.release()
    return result, written, notes


def run(
    settings: ProbeSettings,
    *,
    reporter: Reporter | None = None,
    record: Any = None,
    done: list[dict[str, Any]] | None = None,
    begin: Any = None,
) -> ProbeResult:
    """Probe every selected candidate. ``begin()`` is called once the settings, the data and
    the candidates are known to be good, before the first candidate; ``record(rows)`` after
    each one; ``done`` holds rows of an earlier, interrupted probe to keep."""
    from zoo.labeling.task import MULTI, SINGLE
    from zoo.probing.candidates import Sizes, match, probe_size, select
    from zoo.probing.data import ProbeData

    reporter = reporter or Reporter()
    place = Place(settings.device)  # a bad --device fails here
    matched = match(settings.archs)
    data = ProbeData(settings)
    first = data.facts(probe_size(matched[0], settings.image_size))  # bad data fails here
    task = MULTI if first.multi_label else SINGLE
    sizes = Sizes()
    selection = select(matched, settings, first.in_chans, sizes)
    reporter.selected(selection)
    if begin is not None:
        begin()
    kept = {(r["qualified"], tuple(r["image_size"])): r for r in done or [] if r["status"] == "ok"}
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    probed = 0  # candidates this process started: the first always starts
    total = len(selection.candidates)
    for index, candidate in enumerate(selection.candidates):
        earlier = kept.get((candidate.weights.qualified, candidate.image_size))
        if earlier is not None:
            row = {**earlier, "resumed": True}
        elif (
            settings.budget is not None and probed and time.monotonic() - started >= settings.budget
        ):
            from zoo.probing.settings import format_duration

            row = new_row(candidate, "skipped")
            spent = format_duration(settings.budget)
            row["reason"] = f"not started: the --budget of {spent} ran out"
        else:
            row = probe_one(candidate, data, settings, place, sizes, reporter, index, total)
            sizes.save()
            probed += 1
        row["task"] = task
        rows.append(row)
        reporter.finished(row)
        if record is not None:
            record(rows)
    ranked = rank(rows)
    return ProbeResult(settings, ranked, best_row(ranked, settings.min_img_s), selection.left_out)


def new_row(candidate: Candidate, status: str) -> dict[str, Any]:
    return {
        "rank": None,
        "name": candidate.name,
        "qualified": candidate.weights.qualified,
        "hub": candidate.weights.hub_id,
        "status": status,
        "reason": None,
        "task": None,
        "accuracy": None,
        "f1": None,
        "knn_accuracy": None,
        "map": None,
        "f1_micro": None,
        "knn_map": None,
        "images_per_second": None,
        "params": candidate.params,
        "gmacs": None if candidate.gmacs is None else round(candidate.gmacs, 4),
        "image_size": list(candidate.image_size),
        "features": None,
        "C": None,
        "train_images": None,
        "val_images": None,
        "cached": False,
        "resumed": False,
        "seconds": None,
    }


class Place:
    """Where candidates run: ``--device`` resolved once, on first use. Where it is known to be
    the CPU without torch (``known_cpu``), nothing imports torch until a candidate has to be
    extracted or fitted; elsewhere it is resolved at once, so a bad ``--device`` fails before
    any candidate."""

    def __init__(self, text: str) -> None:
        from zoo.device.placement import known_cpu

        self.text = text
        self.cpu = known_cpu(text)
        self._device: Any = None
        if not self.cpu:
            self.device()

    def device(self) -> Any:
        if self._device is None:
            from zoo.device.placement import resolve_device

            self._device = resolve_device(self.text)
        return self._device

    def kind(self) -> str:
        return "cpu" if self.cpu else str(self.device().type)

    def release(self) -> None:
        """Give the candidate's memory back before the next one is built."""
        import gc

        if self._device is None:
            return  # nothing ran
        gc.collect()
        if self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def probe_one(
    candidate: Candidate,
    data: ProbeData,
    settings: ProbeSettings,
    place: Place,
    sizes: Any,
    reporter: Reporter,
    index: int,
    total: int,
) -> dict[str, Any]:
    """One candidate's row: scored, or failed with a one-line reason. A candidate scored
    before on the same features is read back from the cache (the features file's header and
    the scores) without loading its network, its features or torch."""
    from zoo.labeling.task import MULTI, SINGLE
    from zoo.models.hub import pretrained_source
    from zoo.models.loading import weights_path
    from zoo.probing.linear import fit_settings

    t0 = time.monotonic()
    row = new_row(candidate, "failed")
    try:
        facts = data.facts(candidate.image_size)
        sizes(candidate, facts.in_chans)  # its cost for the data's channels
        row.update(params=candidate.params, gmacs=_round(candidate.gmacs, 4))
        images = facts.train + facts.val
        reporter.start(index, total, candidate, images)
        task = MULTI if facts.multi_label else SINGLE
        weights_file = weights_path(pretrained_source(candidate.weights))
        name = features_name(candidate, weights_file, facts, settings, place)
        fit = fit_settings(settings.seed, facts.classes, task)
        known = known_scores(name, fit, task)
        if known is not None:
            reporter.advance(images)
            (shape, scores), cached = known, True
        else:
            extracted, cached = features_of(
                candidate, weights_file, data, name, settings, place, reporter
            )
            scores = fitted(extracted, name, fit, facts.classes, settings.seed, place, task)
            shape = extracted.summary()
    except ZooError as exc:
        row["reason"] = str(exc)
    except Exception as exc:  # the network or the library failed: the probe goes on
        row["reason"] = one_line(exc)
    else:
        row.update(
            status="ok",
            **scores.row(),
            images_per_second=round(shape["images_per_second"], 1),
            features=shape["features"],
            train_images=shape["train"],
            val_images=shape["val"],
            cached=cached,
        )
    finally:
        place.release()
    row["seconds"] = round(time.monotonic() - t0, 3)
    return row


def features_name(
    candidate: Candidate, weights_file: Path, facts: Any, settings: ProbeSettings, place: Place
) -> str:
    """The name of the candidate's features in the cache: everything that changes them (and,
    for multi-label data, whose files hold label vectors, the task)."""
    from zoo.device.cpu import listed_features
    from zoo.labeling.task import MULTI
    from zoo.probing import cache

    kind = place.kind()
    return cache.key(
        **({"task": MULTI} if facts.multi_label else {}),
        arch=candidate.weights.qualified,
        weights=cache.weights_digest(weights_file),
        data=facts.digest,
        size=list(candidate.image_size),
        in_chans=facts.in_chans,
        precision=settings.precision,
        device=kind,
        amx=kind == "cpu" and "amxbf16" in listed_features(),
    )


def _scoring(task: str) -> tuple[Any, Any]:
    """The task's scores class and the function that fits them."""
    from zoo.labeling.task import MULTI
    from zoo.probing import linear, multilabel

    if task == MULTI:
        return multilabel.LabelSetScores, multilabel.score
    return linear.Scores, linear.score


def known_scores(name: str, fit: dict[str, Any], task: str) -> tuple[dict[str, Any], Any] | None:
    """What the features ``name`` are (their file's header) and the scores fitted on them with
    ``fit``, when both are in the cache."""
    from zoo.probing import cache

    known = cache.load_scores(name, fit)
    shape = cache.header(name) if known is not None else None
    if shape is None:
        return None
    try:
        return shape, _scoring(task)[0].from_json(known)
    except (KeyError, TypeError, ValueError):
        return None  # damaged: fitted again


def fitted(
    extracted: Any,
    name: str,
    fit: dict[str, Any],
    num_classes: int,
    seed: int,
    place: Place,
    task: str,
) -> Any:
    """The scores of ``extracted`` for ``task`` (fitted, and cached as ``name``'s with
    ``fit``)."""
    from zoo.probing import cache

    score = _scoring(task)[1]
    scores = score(extracted, num_classes, seed, place.device())
    cache.save_scores(name, fit, scores.to_json())
    return scores


def features_of(
    candidate: Candidate,
    weights_file: Path,
    data: ProbeData,
    name: str,
    settings: ProbeSettings,
    place: Place,
    reporter: Reporter,
) -> tuple[Any, bool]:
    """The candidate's features ``name`` from the cache, else extracted (and cached); whether
    they came from the cache."""
    from zoo.probing import cache
    from zoo.probing.features import extract_features, load_backbone

    found = cache.load(name)
    if found is not None:
        reporter.advance(len(found.train) + len(found.val))
        return found, True
    size = candidate.image_size
    splits = data.at(size)
    # Label vectors are kept for multi-label data, whose files are keyed by it too.
    vectors = len(splits.classes) if splits.multi_label else None
    device = place.device()
    backbone = load_backbone(candidate, weights_file, splits.in_chans, device, settings.precision)
    workers = settings.workers if settings.workers is not None else _workers()
    extracted = extract_features(
        backbone,
        splits.train,
        splits.val,
        batch_size=settings.batch_size,
        workers=workers,
        progress=reporter.advance,
        label_vectors=vectors,
    )
    about = {"weights": candidate.weights.qualified, "data": settings.data, "size": list(size)}
    cache.save(name, extracted, about)
    return extracted, False


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scored rows by validation accuracy (then macro F1, then speed), or for multi-label data
    by mAP (then micro F1, then speed), numbered; the others after them, in the order they
    were tried."""
    from zoo.labeling.task import MULTI

    def merit(r: dict[str, Any]) -> tuple[float, ...]:
        speed = -(r["images_per_second"] or 0.0)
        if r.get("task") == MULTI:
            return -r["map"], -r["f1_micro"], speed
        return -r["accuracy"], -r["f1"], speed

    scored = sorted((r for r in rows if r["status"] == "ok"), key=merit)
    ranked = [{**r, "rank": i + 1} for i, r in enumerate(scored)]
    return ranked + [{**r, "rank": None} for r in rows if r["status"] != "ok"]


def best_row(rows: list[dict[str, Any]], min_img_s: float | None) -> dict[str, Any] | None:
    """The best scored row, among those at least ``min_img_s`` images per second fast."""
    for row in rows:
        if row["status"] == "ok" and (
            min_img_s is None or (row["images_per_second"] or 0.0) >= min_img_s
        ):
            return row
    return None


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _workers() -> int:
    from zoo.data.splits import default_workers

    return default_workers()
