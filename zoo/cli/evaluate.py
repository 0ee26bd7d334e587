"""``zoo eval``: a trained model's metrics on a dataset split, as a table or JSON, with
``eval.json`` and PNG plots written next to the run."""

from __future__ import annotations

import sys
from typing import Any

import typer

from zoo.cli import options
from zoo.cli.common import command, print_json, stdout


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


@command
def evaluate(
    path: str = typer.Argument(..., metavar="RUN_DIR_OR_WEIGHTS", help="A run or weights file."),
    data: str | None = typer.Option(
        None,
        "--data",
        metavar="NAME|PATH",
        help="Dataset NAME[:k=v], NAME:LOCATION, image folder or table (default: the data the "
        "run trained on).",
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        metavar="SPLIT",
        help="val, test, train or all (train + val). Default: val; with --data, the split its "
        "source proposes (all for a folder without train/ and val/ subfolders: a test set).",
    ),
    batch_size: int = typer.Option(
        256, "--batch-size", min=1, metavar="N", help="Images per batch."
    ),
    device: str = options.device(),
    precision: str = options.precision("as zoo train chooses: what its validation ran in"),
    engine: str = options.engine(),
    workers: int | None = options.workers(),
    out: str | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Where eval.json and the plots go (default: the run, or the weights' folder).",
    ),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the PNG plots."),
    samples: bool = typer.Option(
        False, "--samples", help="Add each image's true, predicted and top-5 classes to the JSON."
    ),
    top_losses: int = typer.Option(
        16,
        "--top-losses",
        min=0,
        metavar="N",
        help="The N most confidently wrong images, in eval.json and top_losses.png (0: none).",
    ),
    cam: bool = typer.Option(
        False,
        "--cam",
        help="Overlay Grad-CAM class activation maps on the top losses (needs zoo[explain]).",
    ),
    cam_layer: str | None = typer.Option(
        None,
        "--cam-layer",
        metavar="NAME",
        help="The layer --cam maps (default: the network's last convolutional stage).",
    ),
    tta: bool = options.tta("Also evaluate with test-time augmentation, and report both."),
    tta_mode: str | None = options.tta_mode(
        "auto (the default: the views the run trained with, hflip and zoom), flip, crops "
        "or flip+crops; implies --tta."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Evaluate a model: accuracy, top-5, per-class precision, recall and F1, macro and
    weighted averages, the confusion matrix, calibration and the top losses. Without --data,
    on the run's own validation split, rebuilt from the seed the run used. A run's model card
    (README.md) is rewritten with the results."""
    from zoo.tasks.eval_outputs import EvalOptions, evaluate

    options = EvalOptions(
        data=data,
        split=split,
        batch_size=batch_size,
        device=device,
        precision=precision,
        engine=engine,
        workers=workers,
        plots=plots,
        samples=samples,
        top_losses=top_losses,
        cam=cam,
        cam_layer=cam_layer,
        tta=tta_mode or ("auto" if tta else None),
    )
    outputs = evaluate(path, options, out)
    report = outputs.report
    wrote = f"wrote {', '.join(str(p) for p in outputs.written)}"
    if json_output:
        print_json(report)
        for line in [*outputs.notes, wrote]:
            print(line, file=sys.stderr)
        return
    console = stdout()
    _print_report(console, report)
    for line in outputs.notes:
        console.print(line)
    console.print(wrote)


def _print_report(console: Any, report: dict[str, Any]) -> None:

    if report.get("task") == "multi-label":
        _print_multilabel(console, report)
        return

    table = _class_table(console, report, "", ("precision", "recall", "f1", "support"))
    for row in report["per_class"]:
        table.add_row(
            row["class"],
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
            f"{row['support']:,}",
        )
    table.add_section()
    for name, avg in (("macro avg", report["macro"]), ("weighted avg", report["weighted"])):
        table.add_row(
            name,
            f"{avg['precision']:.4f}",
            f"{avg['recall']:.4f}",
            f"{avg['f1']:.4f}",
            f"{report['count']:,}",
        )
    console.print(table)
    if report["macro"]["classes"] < len(report["classes"]):
        console.print(
            f"macro averages over the {report['macro']['classes']} classes in the data or the "
            f"predictions, of the model's {len(report['classes'])}"
        )
    console.print(
        f"accuracy {report['accuracy']:.4f}  top-{report['top_k']} accuracy "
        f"{report['top_k_accuracy']:.4f}  loss {report['loss']:.4f}  "
        f"calibration error (ECE) {report['calibration']['ece']:.4f}"
    )
    tta = report.get("tta")
    if tta:
        console.print(
            f"with TTA ({tta['mode']}, {tta['views']} views): accuracy {tta['accuracy']:.4f}  "
            f"top-{report['top_k']} accuracy {tta['top_k_accuracy']:.4f}  "
            f"loss {tta['loss']:.4f}  calibration error (ECE) {tta['ece']:.4f}"
        )
    worst = worst_loss(report)
    if worst:
        console.print(
            f"top losses: {worst[0]} most confidently wrong, worst {worst[1]} (true "
            f"{worst[2]}, predicted {worst[3]} p={report['top_losses'][0]['probability']:.2f})"
        )


def worst_loss(report: dict[str, Any]) -> tuple[int, str, str, str] | None:
    """How many top losses an evaluation lists, and where its worst is, with its true and
    predicted labels (markup escaped; ``(none)`` for an empty label set); None without any."""
    from rich.markup import escape

    losses = report.get("top_losses") or []
    if not losses:
        return None
    worst = losses[0]
    where = escape(worst.get("path", f"image {worst['index']}"))
    return (
        len(losses),
        where,
        escape(worst["true"]) or "(none)",
        escape(worst["predicted"]) or "(none)",
    )


def _class_table(console: Any, report: dict[str, Any], note: str, columns: tuple[str, ...]) -> Any:
    """Print the evaluation's heading line; return its per-class table with ``columns``."""
    from rich.table import Table

    epoch = f", epoch {report['epoch']}" if report["epoch"] is not None else ""
    console.print(
        f"[bold]{report['model']}[/] ({report['arch']}{epoch}) on {report['data']} "
        f"{report['split']}: {report['count']:,} images{note}"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("class", overflow="fold")
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    return table


def _print_multilabel(console: Any, report: dict[str, Any]) -> None:
    """``zoo eval``'s printout of a multi-label evaluation."""

    columns = ("precision", "recall", "f1", "ap", "threshold", "support")
    table = _class_table(console, report, ", multi-label", columns)
    for row in report["per_class"]:
        ap = "-" if row["ap"] is None else f"{row['ap']:.4f}"
        cells = [f"{row[c]:.4f}" for c in ("precision", "recall", "f1")]
        table.add_row(row["class"], *cells, ap, f"{row['threshold']:.4f}", f"{row['support']:,}")
    table.add_section()
    for name in ("micro", "macro"):
        avg = report[name]
        cells = [f"{avg[c]:.4f}" for c in ("precision", "recall", "f1")]
        ap = f"{report['map']:.4f}" if name == "macro" else ""
        table.add_row(f"{name} avg", *cells, ap, "", "")
    console.print(table)
    console.print(
        f"mAP {report['map']:.4f}  micro F1 {report['micro']['f1']:.4f}  exact match "
        f"{report['exact']:.4f}  Hamming loss {report['hamming']:.4f}  loss "
        f"{report['loss']:.4f}  calibration error (ECE, mean per class) "
        f"{report['calibration']['ece']:.4f}"
    )
    tta = report.get("tta")
    if tta:
        console.print(
            f"with TTA ({tta['mode']}, {tta['views']} views): mAP {tta['map']:.4f}  micro F1 "
            f"{tta['f1_micro']:.4f}  exact match {tta['exact']:.4f}  loss {tta['loss']:.4f}"
        )
    worst = worst_loss(report)
    if worst:
        console.print(
            f"top losses: {worst[0]} most wrong label sets, worst {worst[1]} (true {worst[2]}, "
            f"predicted {worst[3]})"
        )
