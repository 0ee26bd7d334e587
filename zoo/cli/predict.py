"""``zoo predict``: class names and probabilities for image files, in the order given.

Exit codes: 0 when every file was predicted; 1 when some files could not be read (each is
reported on stderr and as an error entry in the output, and the others are still predicted);
2 for bad input (missing paths, unusable weights).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.cli import options
from zoo.cli.common import command, print_json, stdout


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


@command
def predict(
    weights: Annotated[
        str,
        typer.Argument(
            metavar="WEIGHTS", help="A run, a weights file or hf-hub:ORG/NAME[@REVISION]."
        ),
    ],
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="IMAGE_OR_DIR...",
            help="Image files, folders searched recursively, or tables (.csv, .tsv, .parquet) "
            "whose image column names the files.",
        ),
    ],
    top_k: int = typer.Option(
        5, "--top-k", "-k", min=1, metavar="K", help="Classes shown per image."
    ),
    batch_size: int = typer.Option(
        64, "--batch-size", min=1, metavar="N", help="Images per batch."
    ),
    device: str = options.device(),
    workers: int | None = options.workers(),
    precision: str = options.precision("as zoo train chooses for the device and network"),
    engine: str = options.engine(),
    tta: bool = options.tta(
        "Average the probabilities over augmented views (test-time augmentation)."
    ),
    tta_mode: str | None = options.tta_mode(
        "auto (the default: the views the run trained with, hflip and zoom), flip, crops "
        "or flip+crops; implies --tta."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_output: bool = typer.Option(False, "--csv", help="Print CSV, one row per file."),
) -> None:
    """Predict the classes of images with a trained model. Files that are not readable images
    are reported and the others predicted (exit code 1 if any failed)."""
    from zoo.data.splits import default_workers
    from zoo.device.precision import check_precision
    from zoo.errors import ZooError
    from zoo.labeling.outputs import output_for
    from zoo.models.engines import check_engine, prepare
    from zoo.models.loading import load
    from zoo.tasks.prediction import collect_files, predict_files

    if json_output and csv_output:
        raise ZooError("choose one of --json and --csv")
    mode = tta_mode or ("auto" if tta else None)
    if mode is not None:
        from zoo.tasks.tta import check_mode

        check_mode(mode, auto=True)
    check_precision(precision)
    check_engine(engine)
    files = collect_files([Path(p) for p in paths])
    model = load(weights, device=device, precision=precision)
    if mode is not None:
        from zoo.tasks.tta import resolve_mode

        mode = resolve_mode(mode, model.info.config, str(weights))
    prepare(model, engine, batch_size=batch_size, images=len(files))
    output = output_for(model.info, top_k, tta=mode)
    results = predict_files(
        model,
        files,
        output=output,
        batch_size=batch_size,
        workers=default_workers() if workers is None else workers,
    )
    if csv_output:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(output.csv_header())
    collected = []
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            print(f"warning: {result.path}: {result.error}", file=sys.stderr)
        if csv_output:
            writer.writerow(output.csv_row(result))
            sys.stdout.flush()
        else:
            collected.append(result)
    if json_output:
        print_json([output.record(r) for r in collected])
    elif not csv_output:
        _print_table(collected, output)
    if failed:
        raise ZooError(f"{failed} of {len(files)} files could not be read", exit_code=1)


def _print_table(results: list[Any], output: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in output.table_columns():
        table.add_column(name, justify=justify, overflow="fold")
    for r in results:
        table.add_row(*(escape(c) for c in output.table_row(r)), style="red" if r.error else None)
    stdout().print(table)
