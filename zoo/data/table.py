"""Label tables: a CSV, TSV or Parquet file of image files and labels (Kaggle's, fastai's
``from_csv``, Keras' ``flow_from_dataframe``), read into the shared decoder, cache and loader.

Columns are found by name (``image``, ``file``, ``filename``, ``path``; ``label``, ``labels``,
``class``, ``target``), or given. Paths are relative to the table's folder or to ``root``. An
optional split column (``split``: train, val, valid, validation, test; or fastai's boolean
``is_valid``) decides the splits; without one, ``--val-split`` does. A label cell holding
several labels separated by ``delim`` (or a list, in Parquet) makes the data multi-label.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.data.splits import DataSplits, stratified_split
from zoo.errors import ZooError, did_you_mean

SUFFIXES = (".csv", ".tsv", ".parquet")
IMAGE_COLUMNS = ("image", "file", "filename", "path", "image_path", "filepath")
LABEL_COLUMNS = ("label", "labels", "class", "target")
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


@dataclass
class Table:
    """A table's rows as read: image paths (absolute), raw label cells, split names or None."""

    file: Path
    images: list[Path]
    cells: list[Any]
    splits: list[str] | None
    image_column: str
    label_column: str | None


def _columns(file: Path) -> dict[str, list[Any]]:
    """The table's columns by name, read with csv (CSV, TSV) or pyarrow (Parquet)."""
    if not file.exists():
        raise ZooError(f"table {file} does not exist")
    if not file.is_file():
        raise ZooError(f"table {file} is not a file")
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ZooError(
                "reading a Parquet table needs pyarrow: pip install 'zoo[data]'"
            ) from None
        try:
            return pq.read_table(file).to_pydict()
        except Exception as exc:  # pyarrow's ArrowInvalid and OSError subclasses
            raise ZooError(f"cannot read table {file}: {exc}") from None
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter="\t" if suffix == ".tsv" else ","))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ZooError(f"cannot read table {file}: {exc}") from None
    if not rows:
        raise ZooError(f"table {file} is empty")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    return {
        name: [r[i].strip() if i < len(r) else "" for r in body] for i, name in enumerate(header)
    }


def _find(
    columns: dict[str, Any], given: str | None, names: Sequence[str], what: str, file: Path
) -> str:
    """The column ``given`` names, else the first whose name (any case) is one of ``names``."""
    if given is not None:
        if given not in columns:
            raise ZooError(
                f"table {file} has no column {given!r}{did_you_mean(given, columns)} "
                f"(its columns: {', '.join(columns)})"
            )
        return given
    lowered = {c.lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    raise ZooError(
        f"table {file} has no {what} column: name one with {what}=COLUMN "
        f"(looked for {', '.join(names)}; its columns: {', '.join(columns)})"
    )


def read_table(
    file: Path,
    image: str | None = None,
    label: str | None = None,
    root: str | None = None,
    *,
    need_label: bool = True,
) -> Table:
    """A table's image paths, label cells and split names (see the module)."""
    columns = _columns(file)
    image_column = _find(columns, image, IMAGE_COLUMNS, "image", file)
    label_column = (
        _find(columns, label, LABEL_COLUMNS, "label", file)
        if need_label or label is not None
        else next((c for c in columns if c.lower() in LABEL_COLUMNS), None)
    )
    base = Path(root).expanduser() if root else file.parent
    images = [base / str(p) if p not in (None, "") else base / "" for p in columns[image_column]]
    lowered = {c.lower(): c for c in columns}
    splits = None
    if "split" in lowered:
        raw = [str(v).strip().lower() for v in columns[lowered["split"]]]
        unknown = sorted({v for v in raw if v not in SPLIT_NAMES})
        if unknown:
            raise ZooError(
                f"table {file}: split column holds {', '.join(map(repr, unknown[:5]))}; "
                f"expected {', '.join(SPLIT_NAMES)}"
            )
        splits = [SPLIT_NAMES[v] for v in raw]
    elif "is_valid" in lowered:
        splits = [
            "val" if str(v).strip().lower() in ("true", "1", "yes") else "train"
            for v in columns[lowered["is_valid"]]
        ]
    cells = columns[label_column] if label_column else [None] * len(images)
    return Table(file, images, cells, splits, image_column, label_column)


def parse_labels(
    cells: Sequence[Any], delim: str | None, file: Path
) -> tuple[list[Any], list[str]]:
    """Label cells to class indices (or lists of them, multi-label) and the class names:
    sorted, numerically when every label is an integer. ``delim`` separates several labels in
    a cell (blank: any whitespace; None: a cell is one label); in a multi-label table, an
    empty cell is an image with no label."""
    sets: list[list[str]] = []
    empty: list[int] = []
    for i, cell in enumerate(cells):
        if isinstance(cell, (list, tuple)):
            names = [str(c).strip() for c in cell]
        elif cell is None or str(cell).strip() == "":
            names = []
            empty.append(i)
        else:
            text = str(cell).strip()
            parts = [text] if delim is None else text.split(delim.strip() or None)
            names = [p.strip() for p in parts if p.strip()]
        sets.append(
            [n[:-2] if n.endswith(".0") and n[:-2].lstrip("-").isdigit() else n for n in names]
        )
    # Label sets: a cell with several labels, or a list; then an empty cell is an image
    # with no label (every class absent), else a row that lacks its label.
    several = any(len(s) > 1 for s in sets) or any(isinstance(c, (list, tuple)) for c in cells)
    if empty and not several:
        raise ZooError(f"table {file}: row {empty[0] + 1} has no label")
    found = {n for s in sets for n in s}
    numeric = all(n.lstrip("-").isdigit() for n in found)
    classes = sorted(found, key=(lambda n: (int(n), n)) if numeric else None)
    index = {n: i for i, n in enumerate(classes)}
    labels: list[Any] = [sorted({index[n] for n in s}) if several else index[s[0]] for s in sets]
    return labels, classes


def split_rows(
    table: Table, labels: list[Any], val_fraction: float, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Train, val and test row indices: the split column's, else a seeded stratified split."""
    if table.splits is not None:
        return tuple(  # type: ignore[return-value]
            [i for i, s in enumerate(table.splits) if s == name]
            for name in ("train", "val", "test")
        )
    train, val = stratified_split(labels, val_fraction, seed)
    return train, val, []


def load_table(
    file: Path,
    *,
    image: str | None,
    label: str | None,
    root: str | None,
    delim: str | None,
    image_size: tuple[int, int] | None,
    channels: int,
    val_fraction: float,
    seed: int,
    cache_dir: Path | None,
    max_memory_mb: float,
    workers: int | None,
    decode_device: str | None,
) -> DataSplits:
    """A table's images decoded and split (see the ``table`` dataset)."""
    from zoo.data.decoder import typical_size_of
    from zoo.data.loading import load_images

    if channels not in (1, 3):
        raise ZooError(f"table: channels must be 1 or 3, got {channels}")
    table = read_table(file, image, label, root)
    if not table.images:
        raise ZooError(f"table {file} has no rows")
    labels, classes = parse_labels(table.cells, delim, file)
    train_idx, val_idx, test_idx = split_rows(table, labels, val_fraction, seed)
    if not train_idx:
        raise ZooError(f"table {file} has no training rows")
    size = image_size or typical_size_of([table.images[i] for i in train_idx], (224, 224))
    return load_images(
        table.images,
        labels,
        train_idx,
        val_idx,
        classes,
        where=str(file),
        image_size=size or (224, 224),
        channels=channels,
        cache_dir=cache_dir,
        max_memory_mb=max_memory_mb,
        workers=workers,
        decode_device=decode_device,
        test_idx=test_idx,
    )


def _read(params: dict[str, Any]) -> Table | None:
    """The table a source's parameters name, or None when it cannot be read (loading it then
    says why)."""
    try:
        return read_table(
            Path(str(params["file"])),
            params.get("image"),
            params.get("label"),
            params.get("root"),
            need_label=False,
        )
    except ZooError:
        return None


def proposed_size(params: dict[str, Any], cap: tuple[int, int]) -> tuple[int, int] | None:
    """The median size of the training rows' images (see ``decoder.typical_size_of``)."""
    from zoo.data.decoder import typical_size_of

    table = _read(params)
    if table is None:
        return None
    rows = [i for i, s in enumerate(table.splits or []) if s == "train"] or range(len(table.images))
    return typical_size_of([table.images[i] for i in rows], cap)


def default_split(params: dict[str, Any]) -> str:
    """A table with a split column is judged on its val rows, one without on every row."""
    table = _read(params)
    return "val" if table is None or table.splits is not None else "all"
