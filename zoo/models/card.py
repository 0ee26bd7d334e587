"""The model card: ``README.md`` in every run directory, in the Hugging Face Hub's format.

A YAML header (huggingface_hub's ``ModelCardData``: ``library_name``, ``tags``, ``license``,
``datasets``, ``base_model``, and the results as ``model-index``, with their values), then what
a reader needs: the classes, how it was trained, its validation results and those of
``zoo eval`` when there are some, and how to load it with zoo and with timm. It is rendered
from the run's own files (weights metadata, ``metrics.jsonl``, ``summary.json``, ``eval.json``),
so the trainer (at the end of a run), ``zoo eval`` and ``zoo push`` all write the same card.

A ``README.md`` that zoo did not write (it lacks ``MARKER``) is never replaced.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

FILE = "README.md"
MARKER = "<!-- This model card was written by zoo"
_MAX_CLASSES = 100
# Training settings the card shows, in this order, when the run set them.
_SETTINGS = (
    "arch",
    "pretrained",
    "init",
    "data",
    "image_size",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "layer_decay",
    "freeze_epochs",
    "scheduler",
    "loss",
    "aug",
    "ema",
    "class_weights",
    "balanced",
    "task",
    "threshold",
    "seed",
)
# Validation metrics of metrics.jsonl and how the card names them (the Hub's metric ids).
_VAL_METRICS = (
    ("val_accuracy", "accuracy", "validation accuracy"),
    ("val_f1", "f1", "validation macro F1"),
    ("val_precision", "precision", "validation macro precision"),
    ("val_recall", "recall", "validation macro recall"),
)
# A multi-label run's (their F1 at the thresholds chosen on that split).
_MULTI_LABEL_METRICS = (
    ("val_map", "map", "validation mAP"),
    ("val_f1_micro", "f1", "validation micro F1"),
    ("val_f1_macro", "f1", "validation macro F1"),
    ("val_exact", "accuracy", "validation exact match"),
)


def _metrics_of(info: Any) -> tuple[tuple[str, str, str], ...]:
    return _MULTI_LABEL_METRICS if info.thresholds is not None else _VAL_METRICS


def is_zoos(path: Path) -> bool:
    """Whether ``path`` is missing or a card zoo wrote (so zoo may replace it)."""
    try:
        return MARKER in path.read_text(errors="replace")
    except FileNotFoundError:
        return True
    except OSError:
        return False


def write(run: Path, repo_id: str | None = None) -> Path | None:
    """Write ``run/README.md`` atomically; None when a README.md of someone else's is there."""
    from zoo.files.atomic import atomic_write

    path = Path(run) / FILE
    if not is_zoos(path):
        return None
    atomic_write(path, render(run, repo_id).encode())
    return path


def render(run: Path, repo_id: str | None = None, license_id: str | None = None) -> str:
    """The card of the run in ``run``; ``repo_id`` (``ORG/NAME``) for the loading examples of
    a pushed copy, else they load the directory itself; ``license_id`` (a Hub licence id such
    as ``apache-2.0``) overrides the licence of the weights it started from."""
    from huggingface_hub import EvalResult, ModelCardData

    from zoo.models.weights import read_header

    run = Path(run)
    info = read_header(run / "model.safetensors").info
    if info is None:
        raise ZooError(f"{run / 'model.safetensors'} has no zoo metadata: not a zoo run")
    config = dict(info.config or {})
    history = _jsonl(run / "metrics.jsonl")
    summary = _json(run / "summary.json")
    evaluation = _json(run / "eval.json")
    timm_name = info.arch.removeprefix("timm:") if info.arch.startswith("timm:") else None
    base, inherited = _base_model(config)
    license_id = _plain(license_id or inherited) if (license_id or inherited) else None
    dataset = _plain(_dataset_name(str(config.get("data", ""))))
    name = _plain(repo_id.rpartition("/")[2] if repo_id else run.resolve().name)

    val_metrics = _metrics_of(info)
    record, which = _validation_record(history, summary, val_metrics[0][0])
    results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="validation",
            metric_type=metric,
            metric_value=round(float(record[key]), 4),
            metric_name=label,
        )
        for key, metric, label in val_metrics
        if record is not None and isinstance(record.get(key), (int, float))
    ]
    if evaluation and _eval_epoch(evaluation) == info.epoch:  # a stale one is not the model's
        results += _eval_results(evaluation)
    data = ModelCardData(
        library_name="timm" if timm_name else "zoo",
        pipeline_tag="image-classification",
        tags=[
            "image-classification",
            "zoo",
            *(["timm"] if timm_name else []),
            *(["multi-label"] if info.thresholds is not None else []),
        ],
        license=license_id or "other",
        datasets=[dataset] if dataset else None,
        base_model=base,
        metrics=sorted({r.metric_type for r in results}) or None,
        model_name=name,
        eval_results=results or None,
    )
    body = _body(run, repo_id, name, info, config, history, record, which, evaluation, base)
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def validate(text: str, *, zoos: bool = True) -> None:
    """Parse a card as the Hub does (YAML header, model-index), offline; ZooError if invalid.
    zoo's own cards must also name their library (a user's own card need not)."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text)
        _ = card.data.eval_results
    except Exception as exc:
        raise ZooError(f"the model card is not valid: {exc}") from None
    if zoos and not card.data.to_dict().get("library_name"):
        raise ZooError("the model card is not valid: it names no library_name")
    if zoos:
        _check_body(card.text)


# The sections of zoo's card, in order, after its title.
_SECTIONS = ["Classes", "Training", "Results", "How to use"]


def _check_body(text: str) -> None:
    """Refuse a zoo card whose Markdown is not the card zoo renders: raw HTML (but zoo's
    marker comment), headings other than its title and sections, or rules. Every
    user-controlled string is escaped when rendered, so such a card means text from the run
    (a class name, a folder name) broke out of its place."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    inline = [child for t in tokens for child in (t.children or [])]
    html = [t.content.strip() for t in [*tokens, *inline] if t.type.startswith("html_")]
    if any(not (h.startswith(MARKER) and h.endswith("-->") and h.count("-->") == 1) for h in html):
        raise ZooError("the model card is not valid: it holds raw HTML")
    headings = [
        (tokens[i].tag, tokens[i + 1].content)
        for i, t in enumerate(tokens)
        if t.type == "heading_open"
    ]
    if [tag for tag, _ in headings] != ["h1"] + ["h2"] * len(_SECTIONS) or [
        content for _, content in headings[1:]
    ] != _SECTIONS:
        raise ZooError("the model card is not valid: its headings are not those zoo writes")
    if any(t.type == "hr" for t in tokens):
        raise ZooError("the model card is not valid: it holds a horizontal rule")


def _body(
    run: Path,
    repo_id: str | None,
    name: str,
    info: Any,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    record: dict[str, Any] | None,
    which: str,
    evaluation: dict[str, Any] | None,
    base: str | None,
) -> str:
    timm_name = info.arch.removeprefix("timm:") if info.arch.startswith("timm:") else None
    channels, (height, width) = info.in_chans, info.image_size
    origin = f", fine-tuned from [{_text(base)}](https://huggingface.co/{base})" if base else ""
    lines = [
        f"{MARKER}; `zoo eval` and `zoo push` rewrite it. -->",
        "",
        f"# {_text(name)}",
        "",
        f"An image classifier trained with zoo: {_code(info.arch)}{origin}, {info.num_classes} "
        f"classes, {channels}x{height}x{width} input.",
        "",
        "## Classes",
        "",
        ", ".join(_code(str(c)) for c in info.classes[:_MAX_CLASSES])
        + (f" and {len(info.classes) - _MAX_CLASSES} more" if len(info.classes) > 100 else ""),
        "",
        "## Training",
        "",
        "| setting | value |",
        "| --- | --- |",
    ]
    for key in _SETTINGS:
        value = config.get(key)
        if value in (None, False, [], "", 0, "none") and key not in ("lr", "seed"):
            continue
        if key == "data":
            value = _dataset_name(str(value))
        if key == "epochs":
            value = f"{len(history)} of {value}" if history else value
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        lines.append(f"| {key.replace('_', ' ')} | {_cell(_code(str(shown)))} |")
    lines += ["", "## Results", ""]
    if record is not None:
        lines += [
            f"On the validation split, {which} (epoch {_number(record.get('epoch'))}):",
            "",
            "| metric | value |",
            "| --- | --- |",
        ]
        for key, _, label in _metrics_of(info):
            if isinstance(record.get(key), (int, float)):
                lines.append(f"| {label.removeprefix('validation ')} | {record[key]:.4f} |")
        lines.append("")
    else:
        lines += ["No epoch has validation results.", ""]
    if evaluation and evaluation.get("task") == "multi-label":
        lines += [
            f"`zoo eval` on {_text(_dataset_name(str(evaluation.get('data', ''))))} "
            f"({_text(str(evaluation.get('split')))} split, {_number(evaluation.get('count'))} "
            f"images) {_eval_label(evaluation, info.epoch)}, at the thresholds the weights "
            "record:",
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| mAP | {_value(evaluation.get('map'))} |",
            f"| micro F1 | {_value((evaluation.get('micro') or {}).get('f1'))} |",
            f"| macro F1 | {_value((evaluation.get('macro') or {}).get('f1'))} |",
            f"| exact match | {_value(evaluation.get('exact'))} |",
            f"| Hamming loss | {_value(evaluation.get('hamming'))} |",
            f"| loss | {_value(evaluation.get('loss'))} |",
            "",
        ]
    elif evaluation:
        lines += [
            f"`zoo eval` on {_text(_dataset_name(str(evaluation.get('data', ''))))} "
            f"({_text(str(evaluation.get('split')))} split, {_number(evaluation.get('count'))} "
            f"images) {_eval_label(evaluation, info.epoch)}:",
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| accuracy | {_value(evaluation.get('accuracy'))} |",
            f"| top-{_number(evaluation.get('top_k', 5))} accuracy | "
            f"{_value(evaluation.get('top_k_accuracy', evaluation.get('top5_accuracy')))} |",
            f"| macro F1 | {_value((evaluation.get('macro') or {}).get('f1'))} |",
            f"| loss | {_value(evaluation.get('loss'))} |",
            "",
        ]
    source = f"hf-hub:{repo_id}" if repo_id else str(run)
    lines += [
        "## How to use",
        "",
        "With zoo:",
        "",
        "```python",
        "import zoo",
        "",
        f"model = zoo.load({_python(source)})  # eval mode, with its class names",
        "print(model.predict(images, top_k=3))  # uint8 [B, C, H, W] images, any size",
        "```",
        "",
        f"or {_code(f'zoo predict {shlex.quote(source)} photos/')}.",
        "",
    ]
    if timm_name:
        timm_source = f"hf-hub:{repo_id}" if repo_id else f"local-dir:{run}"
        lines += [
            "With timm, which reads the same `config.json` and `model.safetensors`:",
            "",
            "```python",
            "import timm",
            "",
            f"net = timm.create_model({_python(timm_source)}, pretrained=True).eval()",
            "```",
            "",
        ]
    mean = ", ".join(f"{v:.4f}" for v in info.mean)
    std = ", ".join(f"{v:.4f}" for v in info.std)
    lines += [
        f"Inputs: images resized to {height}x{width}, scaled to [0, 1], then normalized with "
        f"mean ({mean}) and std ({std}).",
        "",
    ]
    return "\n".join(lines)


def _eval_epoch(report: dict[str, Any]) -> int | None:
    epoch = report.get("epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def _eval_label(report: dict[str, Any], current: int | None) -> str:
    """Which weights an ``eval.json`` judged: those of the card (its epoch), or older ones
    (training or ``--resume`` went on since): then said, and left out of the model-index."""
    epoch = _eval_epoch(report)
    if epoch is not None and epoch == current:
        return f"of epoch {epoch}"
    when = f"of epoch {epoch}" if epoch is not None else "of an unknown epoch"
    return f"{when}, not of these weights (epoch {current}): run `zoo eval` again for theirs"


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "?"


def _value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "?"


# Characters that would end a line or hide text: shown as escapes (\n, \u202e).
_UNPRINTABLE = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def _plain(text: str) -> str:
    """``text`` on one line: line breaks, tabs and other invisible characters as escapes."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


def _text(text: str) -> str:
    """``text`` as Markdown that renders it literally: on one line, every ASCII punctuation
    character backslash-escaped (so no emphasis, link, HTML, entity or heading)."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", _plain(text))


def _code(text: str) -> str:
    """``text`` as an inline code span, which Markdown renders literally (HTML included): on
    one line, fenced by more backticks than it holds in a row."""
    text = _plain(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(markdown: str) -> str:
    """Markdown inside a table cell: a pipe ends the cell even inside a code span, unless
    escaped."""
    return markdown.replace("|", "\\|")


def _python(text: str) -> str:
    """``text`` as a Python string literal on one line (a JSON string is one)."""
    return json.dumps(text)


def _validation_record(
    history: list[dict[str, Any]], summary: dict[str, Any] | None, key: str = "val_accuracy"
) -> tuple[dict[str, Any] | None, str]:
    """The epoch whose validation metrics the card reports (the epochs that record ``key``):
    the best one by the monitored metric, else the last one; and how to say which."""
    with_val = [r for r in history if isinstance(r.get(key), (int, float))]
    if not with_val:
        return None, ""
    best = (summary or {}).get("best") or {}
    epoch = best.get("epoch")
    for r in with_val:
        if r.get("epoch") == epoch and str(best.get("metric", "")).startswith("val_"):
            return r, f"at the best epoch by {_text(str(best['metric']))}"
    return with_val[-1], "at the last epoch"


def _eval_results(report: dict[str, Any]) -> list[Any]:
    from huggingface_hub import EvalResult

    dataset = _plain(_dataset_name(str(report.get("data", ""))))
    split = _plain(str(report.get("split", "val")))
    values = [
        ("map", report.get("map"), "zoo eval mAP"),
        ("f1", (report.get("micro") or {}).get("f1"), "zoo eval micro F1"),
        ("accuracy", report.get("exact"), "zoo eval exact match"),
        ("accuracy", report.get("accuracy"), "zoo eval accuracy"),
        ("accuracy", report.get("top5_accuracy"), f"zoo eval top-{report.get('top_k', 5)}"),
        ("f1", (report.get("macro") or {}).get("f1"), "zoo eval macro F1"),
    ]
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split={"val": "validation"}.get(split, split),
            metric_type=metric,
            metric_value=round(float(value), 4),
            metric_name=label,
        )
        for metric, value, label in values
        if isinstance(value, (int, float))
    ]


def _base_model(config: dict[str, Any]) -> tuple[str | None, str | None]:
    """The Hub repository the run started from (``--pretrained``'s, or ``--init hf-hub:``),
    and the licence its plugin states for those weights."""
    from zoo.models.hub import is_hub_ref, parse_ref

    init = config.get("init")
    if isinstance(init, str) and is_hub_ref(init):
        return parse_ref(init).repo_id, None
    if not config.get("pretrained"):
        return None, None
    from zoo.plugins.build import get_registry
    from zoo.plugins.specs import parse_spec

    try:
        ref = parse_spec(str(config.get("arch", "")), kind="architecture").ref
        weights = get_registry().find_pretrained(ref)
    except ZooError:
        return None, None
    license_id = weights.config.get("license")
    return weights.hub_id, license_id if isinstance(license_id, str) else None


def _dataset_name(spec: str) -> str:
    """A dataset as a card names it: its name, or the name of the local folder or file it was
    read from (never the path itself)."""
    from zoo.plugins.specs import parse_spec

    if not spec:
        return ""
    try:
        parsed = parse_spec(spec, kind="dataset")
    except ZooError:
        return Path(spec).name
    local = [v for v in parsed.params.values() if isinstance(v, str) and Path(v).is_absolute()]
    return Path(local[0]).name if local else parsed.name


def _json(path: Path) -> dict[str, Any] | None:
    """A JSON record of the run, or None when it is missing or damaged: the card leaves it out."""
    from zoo.files import records

    try:
        return records.document(path)
    except records.Damaged:
        return None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records, or none when it is damaged: the card leaves them out."""
    from zoo.files import records

    try:
        return records.history(path.parent)
    except records.Damaged:
        return []
