"""``zoo shard``: any data source written as WebDataset shards (``zoo.data.sharding``)."""

from __future__ import annotations

from pathlib import Path

import typer

from zoo.cli.common import command, stdout


def register(app: typer.Typer) -> None:
    app.command("shard")(shard)


@command
def shard(
    data: str = typer.Argument(
        ..., metavar="DATA", help="Any form --data takes: a folder, a table, hf:..., a name."
    ),
    out: str = typer.Argument(..., metavar="OUT", help="A new folder for the shards."),
    shard_size: str = typer.Option(
        "500MB", "--shard-size", metavar="SIZE", help="Bytes per shard at most (500MB, 1GB)."
    ),
    format: str = typer.Option(
        "png", "--format", metavar="FORMAT", help="jpg, png (lossless) or webp."
    ),
    image_size: str | None = typer.Option(
        None,
        "--image-size",
        metavar="N|HxW",
        help="Size of the images written (default: what zoo train would choose).",
    ),
    val_split: float = typer.Option(
        0.2, "--val-split", help="Held out for val-*.tar when the data has no val split."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of that held-out split."),
) -> None:
    """Write a data source as WebDataset shards (train-*.tar, val-*.tar, test-*.tar) with
    classes.txt and sizes.json, ready for --data wds:OUT locally or on object storage."""
    from zoo.data.sharding import parse_size, write_shards
    from zoo.data.source import build_splits, proposed_size, resolve_data
    from zoo.errors import ZooError
    from zoo.train.config import parse_image_size

    size = parse_size(shard_size)
    fmt = format.lower()
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ZooError(f"{target} exists and is not an empty folder; choose a new one")
    if not 0 <= val_split < 1:
        raise ZooError("val split must be in [0, 1)")
    resolved = resolve_data(data)
    chosen = parse_image_size(image_size) or proposed_size(resolved, (224, 224))
    splits = build_splits(resolved, image_size=chosen, seed=seed, val_fraction=val_split)
    counts = write_shards(splits, target, shard_size=size, fmt=fmt)
    shown = ", ".join(f"{n:,} {name}" for name, n in counts.items())
    stdout().print(f"wrote {shown} samples as shards in {target} (--data wds:{target})")
