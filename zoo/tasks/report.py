"""``zoo report``: one self-contained HTML page about a run.

The page holds the run's settings and environment, its training curves, and what its
evaluation found (``eval.json`` and the pictures it lists): metrics, confusion matrix, per-class
table, top losses with their class activation maps, calibration and test-time augmentation,
and the model card (``README.md``) when the run has one. Pictures are embedded as ``data:``
URIs and the script and styles (``zoo/tasks/templates``) are inlined, so the file opens from
disk, offline, in any browser, and can be mailed or archived as it is.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from zoo.errors import ZooError

TEMPLATES = Path(__file__).with_name("templates")
SECTIONS = (
    ("summary", "Summary"),
    ("settings", "Settings"),
    ("environment", "Environment"),
    ("curves", "Training curves"),
    ("confusion", "Confusion matrix"),
    ("per-class", "Per class"),
    ("top-losses", "Top losses"),
    ("calibration", "Calibration"),
    ("model-card", "Model card"),
)
_PACKAGES = ("zoo", "torch", "torchvision", "timm", "numpy", "grad-cam")


# What the page's head says of its maker (templates/report.html): zoo replaces its own pages only.
GENERATOR = '<meta name="generator" content="zoo '


def written_by_zoo(path: Path) -> bool:
    """Whether ``path`` is a report page zoo wrote (its head names zoo as its generator); a
    link or a special file is never opened."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            return GENERATOR.encode() in f.read(4096)
    except OSError:
        return False


@dataclass
class RunFiles:
    """What a report reads from a run and its evaluation."""

    run_dir: Path
    info: Any  # zoo.models.weights.ModelInfo
    evaluation: dict[str, Any]
    pictures: dict[str, bytes] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    card: str | None = None
    notes: list[str] = field(default_factory=list)


def read_run(run_dir: Path, info: Any, eval_dir: Path) -> RunFiles:
    """The run's files and its evaluation in ``eval_dir`` (``eval.json`` and its pictures). A
    damaged ``metrics.jsonl`` or ``summary.json`` is left out with a note; a damaged
    ``eval.json``, which the page is made of, is an error."""
    from zoo.files import records
    from zoo.files.reading import read_bytes

    eval_file = eval_dir / records.EVAL
    evaluation = records.document(eval_file)
    if evaluation is None:
        raise ZooError(f"cannot read {eval_file}: it does not exist")
    files = RunFiles(run_dir, info, evaluation)
    for name in evaluation.get("pictures", []):
        try:
            files.pictures[name] = read_bytes(eval_dir / name)
        except OSError:
            files.notes.append(f"note: {eval_dir / name} is missing; run zoo eval again")
    if info.epoch is not None and evaluation.get("epoch") not in (None, info.epoch):
        files.notes.append(
            f"note: {eval_file} is from epoch {evaluation['epoch']} and the weights are at epoch "
            f"{info.epoch}; run zoo eval again for an up-to-date report"
        )
    try:
        files.history = records.history(run_dir)
    except records.Damaged as exc:
        files.notes.append(f"note: {exc}; the report has no training curves")
    try:
        files.summary = records.document(run_dir / records.SUMMARY) or {}
    except records.Damaged as exc:
        files.notes.append(f"note: {exc}; the report leaves it out")
    card = run_dir / "README.md"
    if card.is_file():
        files.card = read_bytes(card).decode(errors="replace")
    return files


def render(files: RunFiles) -> str:
    """The report page as one HTML string."""
    from zoo import __version__
    from zoo.tasks.plots import CURVE_PANELS

    ev, info = files.evaluation, files.info
    sections = {
        "summary": _summary(ev),
        "settings": _settings(info),
        "environment": _environment(files.summary),
        "curves": _curves(files),
        "confusion": _picture(files, "pr_curves.png", "precision-recall curves")
        + '<p class="note">Each class\'s precision against its recall as its threshold moves; '
        "the dot marks the threshold the weights record.</p>"
        if _multi(ev)
        else _picture(files, "confusion_matrix.png", "confusion matrix")
        + '<p class="note">Rows are true classes, columns predicted ones; each cell is '
        "coloured by its share of the true class.</p>",
        "per-class": _per_class(ev),
        "top-losses": _top_losses(files),
        "calibration": _calibration(files),
        "model-card": (
            f'<pre class="card">{_e(files.card)}</pre>'
            if files.card is not None
            else '<p class="note">No model card: the run has no README.md.</p>'
        ),
    }
    body = "\n".join(
        f'<section id="{key}">\n<h2>{title}</h2>\n{sections[key]}\n</section>'
        for key, title in SECTIONS
    )
    nav = " ".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS)
    panels = [
        [name, [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in files.history)]]
        for name, keys in CURVE_PANELS
    ]
    data = {"history": files.history, "panels": [p for p in panels if p[1]]}
    epoch = f", epoch {ev['epoch']}" if ev.get("epoch") is not None else ""
    template = Template((TEMPLATES / "report.html").read_text())
    return template.substitute(
        title=_e(f"{files.run_dir.name}: {ev.get('arch', info.arch)}"),
        subtitle=_e(f"{ev.get('data')} ({ev.get('split')} split, {ev.get('count')} images{epoch})"),
        nav=nav,
        body=body,
        css=(TEMPLATES / "report.css").read_text(),
        script=(TEMPLATES / "report.js").read_text(),
        # Inside <script>, "</" would end the element early.
        data=json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/"),
        zoo_version=_e(__version__),
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else _e(value)


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<div class="figure"><img alt="{_e(alt)}" src="data:image/png;base64,{encoded}"></div>'


def _picture(files: RunFiles, name: str, alt: str) -> str:
    if name in files.pictures:
        return _img(files.pictures[name], alt)
    return f'<p class="note">No {_e(name)} in this evaluation (run zoo eval with plots).</p>'


def _table(
    headers: list[str],
    rows: list[list[Any]],
    *,
    numeric: frozenset[int] = frozenset(),
    sortable: bool = False,
    sort: str | None = None,
    css: str = "",
) -> str:
    """A table; numeric columns carry their raw value in ``data-value`` for sorting."""
    classes = " ".join(c for c in (css, "sortable" if sortable else "") if c)
    attrs = (f' class="{classes}"' if classes else "") + (f' data-sort="{sort}"' if sort else "")
    head = "".join(
        f"<th{' class=num' if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if i in numeric:
                cells.append(f'<td class="num" data-value="{_e(value)}">{_num(value)}</td>')
            else:
                cells.append(f"<td>{value}</td>")  # already HTML (escaped by the caller)
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv(pairs: dict[str, Any]) -> str:
    rows = [[_e(k), _e(_flat(v))] for k, v in pairs.items()]
    return _table(["setting", "value"], rows, css="kv")


def _flat(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_flat(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items()) if value else "(none)"
    return "(none)" if value is None else str(value)


def _metric(value: Any, label: str) -> str:
    shown = f"{value:.4f}" if isinstance(value, float) else _e(value)
    return f'<div class="metric"><b>{shown}</b><span>{_e(label)}</span></div>'


def _multi(ev: dict[str, Any]) -> bool:
    return ev.get("task") == "multi-label"


def _summary(ev: dict[str, Any]) -> str:
    k = ev.get("top_k", 5)
    if _multi(ev):
        tta = ev.get("tta")
        cards = [
            _metric(ev.get("map"), "mAP"),
            _metric(ev.get("micro", {}).get("f1"), "micro F1"),
            _metric(ev.get("macro", {}).get("f1"), "macro F1"),
            _metric(ev.get("exact"), "exact match"),
            _metric(ev.get("hamming"), "Hamming loss"),
            _metric(ev.get("loss"), "loss (binary cross-entropy)"),
            *([_metric(tta["f1_micro"], f"micro F1 with TTA ({tta['mode']})")] if tta else []),
        ]
        return (
            f'<div class="metrics">{"".join(cards)}</div>'
            f'<p class="note">Model <code>{_e(ev.get("model"))}</code> ({_e(ev.get("arch"))}), '
            f"multi-label, on {_e(ev.get('data'))}, {_e(ev.get('split'))} split: "
            f"{_e(ev.get('count'))} images.</p>"
        )
    cards = [
        _metric(ev.get("accuracy"), "accuracy"),
        _metric(ev.get("top_k_accuracy"), f"top-{k} accuracy"),
        _metric(ev.get("macro", {}).get("f1"), "macro F1"),
        _metric(ev.get("loss"), "loss (cross-entropy)"),
    ]
    if "calibration" in ev:
        cards.append(_metric(ev["calibration"]["ece"], "expected calibration error"))
    tta = ev.get("tta")
    if tta:
        cards.append(_metric(tta["accuracy"], f"accuracy with TTA ({tta['mode']})"))
    return (
        f'<div class="metrics">{"".join(cards)}</div>'
        f'<p class="note">Model <code>{_e(ev.get("model"))}</code> ({_e(ev.get("arch"))}) on '
        f"{_e(ev.get('data'))}, {_e(ev.get('split'))} split: {_e(ev.get('count'))} images.</p>"
    )


def _settings(info: Any) -> str:
    model = {
        "architecture": info.arch,
        "architecture parameters": info.arch_params,
        "classes": f"{info.num_classes}: {_flat(info.classes[:20])}"
        + (" ..." if info.num_classes > 20 else ""),
        "input": f"{info.in_chans}x{info.image_size[0]}x{info.image_size[1]}",
        "normalization mean": info.mean,
        "normalization std": info.std,
        "epoch": info.epoch,
    }
    config = dict(info.config or {})
    return (
        '<div class="columns"><div><h3>Model</h3>'
        + _kv(model)
        + "</div><div><h3>Training configuration</h3>"
        + (_kv(config) if config else '<p class="note">The weights record no configuration.</p>')
        + "</div></div>"
    )


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _environment(summary: dict[str, Any]) -> str:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    here = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **versions,
    }
    training = (
        _kv(_flatten(summary)) if summary else '<p class="note">The run has no summary.json.</p>'
    )
    return (
        '<div class="columns"><div><h3>Training (summary.json)</h3>'
        + training
        + "</div><div><h3>This report was written with</h3>"
        + _kv(here)
        + "</div></div>"
    )


def _curves(files: RunFiles) -> str:
    if not files.history:
        return '<p class="note">The run has no metrics.jsonl.</p>'
    fallback = (
        f"<noscript>{_img(files.pictures['training_curves.png'], 'training curves')}</noscript>"
        if "training_curves.png" in files.pictures
        else ""
    )
    return (
        '<p class="note">Hover over a chart to read each epoch\'s values.</p>'
        f'<div id="curves-chart" class="charts"></div>{fallback}'
    )


def _per_class(ev: dict[str, Any]) -> str:
    if _multi(ev):
        columns = ["class", "precision", "recall", "f1", "ap", "threshold", "support"]
        rows = [[_e(r["class"]), *(r[c] for c in columns[1:])] for r in ev.get("per_class", [])]
        table = _table(columns, rows, numeric=frozenset(range(1, 7)), sortable=True, sort="3 asc")
        note = "Sorted by F1, worst first; click a column to sort by it."
        return f'<p class="note">{note}</p>' + table
    rows = [
        [_e(r["class"]), r["precision"], r["recall"], r["f1"], r["support"]]
        for r in ev.get("per_class", [])
    ]
    table = _table(
        ["class", "precision", "recall", "f1", "support"],
        rows,
        numeric=frozenset({1, 2, 3, 4}),
        sortable=True,
        sort="3 asc",
    )
    return '<p class="note">Sorted by F1, worst first; click a column to sort by it.</p>' + table


def _where(entry: dict[str, Any]) -> str:
    if "path" not in entry:
        return f"image {_e(entry['index'])}"
    path = Path(entry["path"])
    name = _e(path.name)
    if path.is_absolute():
        return f'<a href="{_e(path.as_uri())}" title="{_e(path)}">{name}</a>'
    return f'<span title="{_e(path)}">{name}</span>'


def _top_losses(files: RunFiles) -> str:
    ev = files.evaluation
    entries = ev.get("top_losses")
    if entries is None:
        return '<p class="note">This eval.json has no top losses; run zoo eval again.</p>'
    if not entries:
        return '<p class="note">No misclassified images.</p>'
    cam = ev.get("cam")
    about = (
        f"Beside each image, its {_e(cam['method'])} class activation map for the predicted "
        f"class (layer <code>{_e(cam['layer'])}</code>): red areas drove the prediction."
        if cam
        else "Run zoo eval with --cam to add class activation maps."
    )
    # A multi-label entry names the class it is most wrong about, with that class's probability.
    second = ("worst_class", "worst class") if _multi(ev) else ("true_probability", "")
    rows = [
        [
            n,
            _where(e),
            _e(e["true"]),
            _e(e["predicted"]),
            e["probability"],
            _e(e[second[0]]) if _multi(ev) else e[second[0]],
            e["loss"],
        ]
        for n, e in enumerate(entries, start=1)
    ]
    headers = ["rank", "image", "true", "predicted", "probability"]
    table = _table(
        [*headers, second[1] or "true class probability", "loss"],
        rows,
        numeric=frozenset({0, 4, 6} if _multi(ev) else {0, 4, 5, 6}),
        sortable=True,
    )
    return (
        f'<p class="note">The {len(entries)} images the model is most confidently wrong about. '
        f"{about}</p>" + _picture(files, "top_losses.png", "top losses") + table
    )


def _calibration(files: RunFiles) -> str:
    ev = files.evaluation
    cal = ev.get("calibration")
    if cal is None:
        return '<p class="note">This eval.json has no calibration; run zoo eval again.</p>'
    if _multi(ev):
        worst = sorted(cal["per_class"], key=lambda r: -r["ece"])
        return (
            f"<p>Expected calibration error <b>{cal['ece']:.4f}</b>, the mean of each class's "
            f"over {cal['bins']} probability bins ({cal['pooled_ece']:.4f} pooled over every "
            "class, as drawn: each bin's share of present labels against its mean "
            "probability).</p>"
            + _picture(files, "calibration.png", "reliability diagram")
            + _table(
                ["class", "expected calibration error"],
                [[_e(r["class"]), r["ece"]] for r in worst],
                numeric=frozenset({1}),
            )
        )
    text = (
        f"<p>Expected calibration error <b>{cal['ece']:.4f}</b> over {cal['bins']} confidence "
        f"bins (maximum gap {cal['mce']:.4f}; mean confidence {cal['mean_confidence']:.4f} for "
        f"an accuracy of {ev['accuracy']:.4f}). A calibrated model's bars follow the "
        "diagonal.</p>"
    )
    tta = ev.get("tta")
    if tta:
        k = ev.get("top_k", 5)
        rows = [
            ["accuracy", ev["accuracy"], tta["accuracy"]],
            [f"top-{k} accuracy", ev["top_k_accuracy"], tta["top_k_accuracy"]],
            ["macro F1", ev["macro"]["f1"], tta["macro_f1"]],
            ["loss", ev["loss"], tta["loss"]],
            ["expected calibration error", cal["ece"], tta["ece"]],
        ]
        text += (
            f"<h3>Test-time augmentation ({_e(tta['mode'])}, {tta['views']} views)</h3>"
            + _table(
                ["metric", "without TTA", "with TTA"],
                [[_e(r[0]), r[1], r[2]] for r in rows],
                numeric=frozenset({1, 2}),
                css="tta",
            )
        )
    return text + _picture(files, "calibration.png", "reliability diagram")
