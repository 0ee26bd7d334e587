"""``zoo probe``: rank pretrained backbones on the user's data by linear probes on frozen
features (``zoo.probe``), as a table or JSON, with the ``zoo train`` command for the best."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from zoo.cli import options
from zoo.cli.common import command, print_json, stderr, stdout
from zoo.errors import ZooError

# What --resume may change: how long to go on, and what to do at the end.
_RESUMABLE = {"resume", "budget", "json_output", "train", "pretrained"}


def register(app: typer.Typer) -> None:
    app.command("probe")(probe)


@command
def probe(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(  # noqa: UP045 - a runtime type for typer
        None,
        "--data",
        metavar="NAME|PATH",
        help="Any form zoo train's --data takes: NAME[:k=v], NAME:LOCATION (hf:ORG/NAME, "
        "wds:DIR_OR_URL), a folder of class folders or a table (.csv, .tsv, .parquet).",
    ),
    arch: Optional[list[str]] = typer.Option(  # noqa: UP045, B008 - typer reads the list type
        None,
        "--arch",
        metavar="NAME|GLOB",
        help="Pretrained weights NAME.TAG (a bare NAME: its default tag) or a glob over them "
        "('convnext_*', 'resnet50.*'); repeat for several. See zoo list --pretrained.",
    ),
    pretrained: bool = typer.Option(
        True,
        "--pretrained",
        help="Probe the candidates' pretrained weights (always: the flag reads as zoo train's).",
    ),
    max_models: int = typer.Option(
        20, "--max-models", metavar="N", help="At most N candidates, the smallest first."
    ),
    budget: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--budget",
        metavar="TIME",
        help="Start no candidate after this long (90s, 15m, 1h); the rest are listed as skipped.",
    ),
    image_size: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--image-size",
        metavar="N|HxW",
        help="Probe every candidate at this size (default: each at its weights' own size).",
    ),
    max_params: Optional[str] = typer.Option(  # noqa: UP045
        None, "--max-params", metavar="N", help="Leave out backbones above N parameters (25M)."
    ),
    max_gmacs: Optional[float] = typer.Option(  # noqa: UP045
        None, "--max-gmacs", metavar="X", help="Leave out backbones above X GMACs per image."
    ),
    min_img_s: Optional[float] = typer.Option(  # noqa: UP045
        None,
        "--min-img-s",
        metavar="X",
        help="Recommend the best backbone at least X images/s fast here.",
    ),
    out: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--out",
        metavar="DIR",
        help="Where probe.json, probe.csv and probe.png go (default: runs/probe-TIMESTAMP).",
    ),
    resume: Optional[str] = typer.Option(  # noqa: UP045
        None,
        "--resume",
        metavar="DIR",
        help="Continue an interrupted probe in DIR with its own settings.",
    ),
    train: bool = typer.Option(
        False, "--train", help="Go on to fine-tune the best backbone with zoo train."
    ),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Images per batch."),
    device: str = options.device(),
    precision: str = options.precision("as zoo train chooses for the device and network"),
    workers: Optional[int] = options.workers(),  # noqa: UP045
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of the validation split."),
    val_split: float = typer.Option(
        0.2, "--val-split", metavar="X", help="Share of each class held out for validation."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the ranking as JSON."),
) -> None:
    """Which pretrained backbone suits your data? For each candidate: penultimate features of
    the train and validation splits (cached), a logistic regression and a cosine kNN on them;
    ranked by validation accuracy, with macro F1, images/s here, parameters and GMACs
    (multi-label data: one-vs-rest, ranked by mAP, with micro F1 and the kNN's mAP). Ends
    with the zoo train command that fine-tunes the best."""
    from zoo.probing.outputs import read_record
    from zoo.probing.runner import probe as run_probe
    from zoo.probing.settings import settings as make_settings
    from zoo.train.rundir import default_out

    done = None
    if resume is not None:
        given = sorted(
            "--" + name.replace("_", "-").replace("-output", "")
            for name in ctx.params
            if name not in _RESUMABLE and options.given(ctx, name)
        )
        if given:
            raise ZooError(
                f"--resume continues with the probe's own settings; leave out {', '.join(given)}"
            )
        folder = Path(resume)
        saved, done = read_record(folder)
        cfg = saved if budget is None else make_settings(**{**saved.to_json(), "budget": budget})
    else:
        if data is None or not arch:
            raise ZooError("give --data and at least one --arch (or --resume DIR)")
        cfg = make_settings(
            data,
            arch,
            image_size=image_size,
            max_models=max_models,
            max_params=max_params,
            max_gmacs=max_gmacs,
            min_img_s=min_img_s,
            budget=budget,
            batch_size=batch_size,
            device=device,
            precision=precision,
            workers=workers,
            seed=seed,
            val_split=val_split,
        )
        folder = Path(out) if out is not None else default_out("probe")
    from rich.console import Console

    reporter = _progress(Console(stderr=True, highlight=False, soft_wrap=True))
    result, written, notes = run_probe(cfg, out=folder, done=done, reporter=reporter)
    from zoo.probing.outputs import report, train_values

    summary = report(result, folder)
    lines = [*[f"left out: {line}" for line in result.left_out], *notes]
    lines.append(f"wrote {', '.join(str(p) for p in written)}")
    scored = [r for r in result.rows if r["status"] == "ok"]
    if not scored:
        pass  # said below, as the error it is
    elif result.best is None:
        fastest = max(scored, key=lambda r: r["images_per_second"] or 0.0)
        lines.append(
            f"no candidate reaches --min-img-s {cfg.min_img_s:g}; the fastest, "
            f"{fastest['name']}, made {fastest['images_per_second']:,.0f} img/s"
        )
    else:
        extra = f" at {cfg.min_img_s:g} img/s or more" if cfg.min_img_s else ""
        lines.append(f"fine-tune the best{extra}, {result.best['name']}:")
        lines.append(summary["train_command"])
    if json_output:
        print_json(summary)
        for line in lines:
            print(line, file=sys.stderr)
    else:
        console = stdout()
        _print_table(console, result.rows)
        for line in lines:
            console.print(line, markup=False)
    if not scored:
        raise ZooError("no candidate could be probed; the table says why", exit_code=1)
    if train and result.best is not None:
        _train(train_values(cfg, result.best), json_output)


def _train(values: dict[str, Any], json_output: bool) -> None:
    """``--train``: the command just shown, run in this process."""
    from zoo.train.allocator import keep_freed_memory
    from zoo.train.config import from_mapping
    from zoo.train.progress import RichReporter
    from zoo.train.trainer import Trainer

    cfg = from_mapping(values, where="zoo probe --train")
    keep_freed_memory()
    Trainer(cfg, RichReporter(stderr() if json_output else stdout())).fit()


def _print_table(console: Any, rows: list[dict[str, Any]]) -> None:
    """The ranking: numbers right-aligned, the last column (the source of the features, or
    why a candidate has no score) wrapped to the terminal."""
    from zoo.cli.table import cell, render

    scores = _score_columns(rows)
    headers = ("rank", "weights", *scores.values(), "img/s", "params", "gmacs", "size", "s")
    table = []
    for r in rows:
        ok = r["status"] == "ok"
        note = cell(("features from the cache" if r.get("cached") else "", "dim"))
        if r.get("resumed"):
            note = cell(("from the earlier probe", "dim"))
        if not ok:
            note = cell((r["status"], "red"), (f": {r['reason'] or ''}", ""))
        table.append(
            [
                str(r["rank"]) if ok else "-",
                r["name"],
                *(_fixed(r.get(key)) for key in scores),
                f"{r['images_per_second']:,.0f}" if r["images_per_second"] else "-",
                _millions(r["params"]),
                f"{r['gmacs']:.3g}" if r["gmacs"] is not None else "-",
                "x".join(map(str, r["image_size"])),
                f"{r['seconds']:.1f}" if r["seconds"] is not None else "-",
                note,
            ]
        )
    left = {1}  # the weights' names; every other column but the note holds numbers
    for i in range(len(headers)):
        if i not in left:
            width = max(len(headers[i]), *(len(row[i]) for row in table))
            for row in table:
                row[i] = row[i].rjust(width)
    console.print(render((*headers, ""), table, console.width), end="")


def _score_columns(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The table's score columns (row key: header): accuracy, macro F1 and the kNN's accuracy,
    or for multi-label data mAP, micro F1 and the kNN's mAP."""
    from zoo.labeling.task import MULTI

    if any(r.get("task") == MULTI for r in rows):
        return {"map": "mAP", "f1_micro": "micro f1", "knn_map": "knn mAP"}
    return {"accuracy": "accuracy", "f1": "f1", "knn_accuracy": "knn"}


def _fixed(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _millions(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}M"


def _progress(console: Any) -> Any:
    """A progress bar per candidate (on terminals), then one line each (on stderr)."""
    from zoo.labeling.task import MULTI
    from zoo.probing.runner import Reporter

    class Progress(Reporter):
        bar: Any = None
        task: Any = None
        prefix: str | None = None

        def selected(self, selection: Any) -> None:
            n = len(selection.candidates)
            console.print(f"probing {n} candidate{'s' if n != 1 else ''}", highlight=False)

        def start(self, index: int, total: int, candidate: Any, images: int) -> None:
            self.prefix = f"[{index + 1}/{total}] {candidate.name}"
            if not console.is_terminal:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn(self.prefix, markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("images"),
                console=console,
                transient=True,
            )
            self.task = self.bar.add_task("features", total=images)
            self.bar.start()

        def advance(self, images: int) -> None:
            if self.bar is not None:
                self.bar.advance(self.task, images)

        def finished(self, row: dict[str, Any]) -> None:
            if self.bar is not None:
                self.bar.stop()
                self.bar = None
            name, self.prefix = self.prefix or row["name"], None
            if row["status"] != "ok":
                text = f"{name}: {row['status']}: {row['reason']}"
            else:
                source = "features from the cache" if row.get("cached") else "extracted"
                if row.get("resumed"):
                    source = "from the earlier probe"
                if row.get("task") == MULTI:
                    score = f"mAP {row['map']:.4f}, kNN mAP {row['knn_map']:.4f}"
                else:
                    score = f"accuracy {row['accuracy']:.4f}, kNN {row['knn_accuracy']:.4f}"
                text = (
                    f"{name}: {score}, {row['images_per_second']:,.0f} img/s, "
                    f"{row['seconds']:.1f}s ({source})"
                )
            console.print(text, markup=False, highlight=False)

    return Progress()
