"""``zoo eval``: a trained model's metrics on a dataset split, as a table or JSON, with
``eval.json`` and PNG plots written next to the run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

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
        help="Dataset name[:k=v] or image folder (default: the data the run trained on).",
    ),
    split: str = typer.Option(
        "val", "--split", metavar="SPLIT", help="val, train or all (train + val)."
    ),
    batch_size: int = typer.Option(
        256, "--batch-size", min=1, metavar="N", help="Images per batch."
    ),
    device: str = typer.Option(
        "auto", "--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps."
    ),
    precision: str = typer.Option(
        "fp32", "--precision", metavar="PRECISION", help="fp32 | bf16 | fp16 | auto."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0, metavar="N", help="Data loading workers (default: up to 8)."
    ),
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
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Evaluate a model: accuracy, top-5, per-class precision, recall and F1, macro and
    weighted averages, and the confusion matrix. Without --data, on the run's own validation
    split, rebuilt from the seed the run used."""
    from zoo.data.splits import default_workers
    from zoo.errors import ZooError
    from zoo.models.loading import load, weights_path
    from zoo.tasks import evaluation
    from zoo.train.runtime import check_precision, resolve_device, resolve_precision

    check_precision(precision)
    file = weights_path(path)
    run_dir = file.parent
    target = Path(out) if out is not None else run_dir
    if target.exists() and not target.is_dir():
        raise ZooError(f"--out {target} is a file, not a directory")
    torch_device = resolve_device(device)
    resolve_precision(precision, torch_device)  # bad combinations fail before loading
    model = load(path, device=str(torch_device))
    amp_dtype = resolve_precision(precision, torch_device, model.net)
    chosen = evaluation.eval_data(model.info, data, split, file)
    result = evaluation.run(
        model,
        chosen,
        batch_size=batch_size,
        device=torch_device,
        amp_dtype=amp_dtype,
        workers=default_workers() if workers is None else workers,
    )
    report = evaluation.report(result, file, samples=samples)
    _write(target / "eval.json", (json.dumps(report, indent=2) + "\n").encode())
    written = [target / "eval.json"]
    notes: list[str] = []
    if plots:
        written += _plots(report, run_dir, target, notes)
    if json_output:
        print_json(report)
        for line in [*notes, f"wrote {', '.join(str(p) for p in written)}"]:
            print(line, file=sys.stderr)
        return
    console = stdout()
    _print_report(console, report)
    for line in notes:
        console.print(line)
    console.print(f"wrote {', '.join(str(p) for p in written)}")


def _plots(report: dict[str, Any], run_dir: Path, target: Path, notes: list[str]) -> list[Path]:
    """Write confusion_matrix.png and (when the run has metrics.jsonl) training_curves.png."""
    from zoo.tasks import plots

    if not plots.available():
        notes.append("note: matplotlib is not installed, so no plots: pip install 'zoo[plots]'")
        return []
    title = f"{report['arch']} on {report['data']} ({report['split']})"
    written = [target / "confusion_matrix.png"]
    _write(written[0], plots.confusion_png(report["confusion_matrix"], report["classes"], title))
    metrics = run_dir / "metrics.jsonl"
    history = plots.read_history(metrics) if metrics.is_file() else []
    if history:
        written.append(target / "training_curves.png")
        _write(written[1], plots.curves_png(history, report["arch"]))
    return written


def _write(path: Path, data: bytes) -> None:
    """Write atomically; a read-only run gets a one-line error that suggests --out."""
    from zoo.errors import ZooError
    from zoo.models.weights import atomic_write

    try:
        atomic_write(path, data)
    except OSError as exc:
        raise ZooError(
            f"cannot write {path}: {exc}; choose another place with --out DIR", exit_code=1
        ) from None


def _print_report(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    epoch = f", epoch {report['epoch']}" if report["epoch"] is not None else ""
    console.print(
        f"[bold]{report['model']}[/] ({report['arch']}{epoch}) on {report['data']} "
        f"{report['split']}: {report['count']:,} images"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("class", overflow="fold")
    for column in ("precision", "recall", "f1", "support"):
        table.add_column(column, justify="right", no_wrap=True)
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
        f"{report['top5_accuracy']:.4f}  loss {report['loss']:.4f}"
    )
