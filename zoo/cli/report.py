"""``zoo report``: one self-contained HTML page about a run (zoo.tasks.report)."""

from __future__ import annotations

from pathlib import Path

import typer

from zoo.cli.common import command, stdout


def register(app: typer.Typer) -> None:
    app.command("report")(report)


@command
def report(
    path: str = typer.Argument(..., metavar="RUN_DIR_OR_WEIGHTS", help="A run or weights file."),
    out: str | None = typer.Option(
        None, "--out", metavar="FILE", help="The HTML file to write (default: RUN/report.html)."
    ),
    eval_dir: str | None = typer.Option(
        None,
        "--eval",
        metavar="DIR",
        help="Where eval.json and its pictures are (default: the run). Without an eval.json "
        "there, the run is evaluated first, as zoo eval would.",
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        metavar="NAME|PATH",
        help="Evaluate on this data first, as zoo eval --data would (any form zoo eval takes).",
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        metavar="SPLIT",
        help="Evaluate this split first (val, test, train or all), as zoo eval --split would.",
    ),
) -> None:
    """Write report.html: settings, environment, training curves, confusion matrix, per-class
    table, top losses with class activation maps, calibration and the model card, in one file
    that opens from disk without a network."""
    from zoo.errors import ZooError
    from zoo.files.atomic import write_output
    from zoo.models.loading import weights_path
    from zoo.models.weights import read_header
    from zoo.tasks import eval_outputs
    from zoo.tasks import report as reporting

    file = weights_path(path)
    run_dir = file.parent
    target = Path(out) if out is not None else run_dir / "report.html"
    if target.is_dir():
        raise ZooError(f"--out {target} is a directory; give the HTML file's path")
    if (target.exists() or target.is_symlink()) and not reporting.written_by_zoo(target):
        raise ZooError(f"{target} exists and zoo did not write it; choose another file with --out")
    source = Path(eval_dir) if eval_dir is not None else run_dir
    console = stdout()
    given = data is not None or split is not None
    if given and eval_dir is not None:
        raise ZooError("--eval reads an evaluation already made; --data and --split make one")
    if given or not (source / "eval.json").is_file():
        if eval_dir is not None:
            raise ZooError(f"{source} holds no eval.json; run zoo eval {path} --out {source}")
        options = eval_outputs.EvalOptions(data=data, split=split, cam=_cam_available())
        console.print(
            ("evaluating first, " if given else f"no eval.json in {run_dir}: evaluating first, ")
            + (
                "as zoo eval --cam would"
                if options.cam
                else "as zoo eval would (no class activation maps: pip install 'zoo[explain]')"
            )
        )
        outputs = eval_outputs.evaluate(path, options)
        for line in outputs.notes:
            console.print(line)
        console.print(f"wrote {', '.join(str(p) for p in outputs.written)}")
    info = read_header(file).info
    if info is None:
        from zoo.models.loading import load

        info = load(path).info
    files = reporting.read_run(run_dir, info, source)
    page = reporting.render(files)
    write_output(target, page.encode(), "--out FILE")
    for line in files.notes:
        console.print(line)
    console.print(f"wrote {target}")


def _cam_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pytorch_grad_cam") is not None
