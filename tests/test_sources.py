"""Data sources beyond a folder, through the data-source protocol: label tables, Hugging Face
datasets (written by ``datasets`` itself, on disk and as a Hub cache entry) and WebDataset
shards (written by ``webdataset.ShardWriter``, local, served over HTTP on 127.0.0.1, and read by
two processes). Every source is built from the same small folder of images, so each can be
checked against the folder itself."""

from __future__ import annotations

import csv
import functools
import io
import json
import multiprocessing
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_image_folder
from hubtools import cache_entry

from zoo.data.source import build_splits, normalize_data, resolve_data
from zoo.errors import ZooError
from zoo.plugins.hookspecs import data_source, hookimpl

FAST = ["--image-size", "8", "--epochs", "1", "--batch-size", "8", "--workers", "0"]


def _pets(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "pets", {"cat": 8, "dog": 8}, size=(12, 12))


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))  # cat/ then dog/: the folder's own listing order


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _built(data: str, **kw: object) -> object:
    return build_splits(resolve_data(data), image_size=(8, 8), seed=0, val_fraction=0.25, **kw)


# --- the protocol -------------------------------------------------------------------------


class _TfPlugin:
    """A third party's reader, claiming its own suffix through the protocol."""

    @hookimpl
    def zoo_register_datasets(self, register):
        @data_source(location="file", suffixes=(".csv",))
        def rival(image_size, seed, val_fraction, file: str):
            """Reads .csv too."""

        register("rival", rival)


def test_data_forms_normalise_without_a_registry_and_resolve_through_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zoo.plugins.build as build

    pets = _pets(tmp_path)
    _write_csv(pets / "labels.csv", ["file", "label"], [["cat/000.png", "cat"]])
    monkeypatch.chdir(tmp_path)
    assert normalize_data("pets") == str(pets)
    assert normalize_data("table:./pets/labels.csv") == f"table:{pets / 'labels.csv'}"
    assert normalize_data("hf:org/name:config=x") == "hf:org/name:config=x"
    assert normalize_data("wds:https://host/a-{0..7}.tar") == "wds:https://host/a-{0..7}.tar"
    assert build._registry is None  # normalising asked no registry
    for text, recorded in [
        ("pets", f"zoo:folder:root={pets}"),
        ("pets/labels.csv", f"zoo:table:file={pets / 'labels.csv'}"),
        ("table:pets/labels.csv", f"zoo:table:file={pets / 'labels.csv'}"),
        ("hf:org/name:config=x", "zoo:hf:name=org/name,config=x"),
        ("digits", "zoo:digits"),
    ]:
        assert resolve_data(text).recorded == recorded
    build.add_plugin(_TfPlugin(), "rival-plugin")
    with pytest.raises(ZooError, match=r"several datasets read .*rival-plugin:rival:"):
        resolve_data("pets/labels.csv")
    assert resolve_data("zoo:table:pets/labels.csv").component.qualified == "zoo:table"


# --- tables -------------------------------------------------------------------------------


def test_a_table_trains_as_its_folder_and_zoo_eval_takes_its_test_rows(cli, tmp_path: Path) -> None:
    pets = _pets(tmp_path)
    files = _files(pets)
    rows = [[str(f.relative_to(pets)), f.parent.name] for f in files]
    labels = _write_csv(pets / "labels.csv", ["filename", "class"], rows)
    cli("train", "--data", pets, *FAST, "--out", tmp_path / "folder")
    cli("train", "--data", labels, *FAST, "--out", tmp_path / "table")
    # The same images in the same order and split: the same run, to the last bit.
    timing = ("seconds", "images_per_second", "rss_mb")
    ours, theirs = _metrics(tmp_path / "table"), _metrics(tmp_path / "folder")
    assert {k: v for k, v in ours.items() if k not in timing} == {
        k: v for k, v in theirs.items() if k not in timing
    }
    # TSV and Parquet (written by pandas) hold the same table.
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["filename", "class"])
    frame.to_csv(pets / "labels.tsv", sep="\t", index=False)
    frame.to_parquet(pets / "labels.parquet")
    held = _built(str(labels))
    for other in ("labels.tsv", "labels.parquet"):
        built = _built(str(pets / other))
        assert torch.equal(built.train.images, held.train.images)
        assert built.classes == held.classes == ["cat", "dog"]
    # A split column with test rows: zoo eval --split test judges those rows alone.
    split = [["train", "val", "test", "train"][i % 4] for i in range(len(files))]
    marked = [[*r, s] for r, s in zip(rows, split, strict=True)]
    _write_csv(pets / "split.csv", ["image", "label", "split"], marked)
    cli("eval", tmp_path / "table", "--data", pets / "split.csv", "--split", "test", "--no-plots")
    report = json.loads((tmp_path / "table" / "eval.json").read_text())
    assert report["split"] == "test" and report["count"] == split.count("test")
    result = cli("predict", tmp_path / "table", pets / "labels.csv", "--json")
    assert [r["path"] for r in json.loads(result.stdout)] == [str(f) for f in files]


@pytest.mark.parametrize(
    ("header", "cells", "message"),
    [
        (["picture", "label"], None, "has no image column: name one with image=COLUMN"),
        (["file", "colour"], None, "has no label column: name one with label=COLUMN"),
    ],
)
def test_bad_tables_fail_in_one_line_and_write_nothing(
    cli, tmp_path: Path, header: list[str], cells: str | None, message: str
) -> None:
    pets = _pets(tmp_path)
    rows = [[str(f.relative_to(pets)), cells or f.parent.name] for f in _files(pets)]
    table = _write_csv(pets / "t.csv", header, rows)
    result = cli("train", "--data", table, *FAST, "--out", tmp_path / "run", code=2)
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "run").exists()
    result = cli("train", "--data", tmp_path / "missing.csv", "--out", tmp_path / "run", code=2)
    assert f"table {tmp_path / 'missing.csv'} does not exist" in result.stderr


def test_missing_images_of_a_table_are_skipped_and_counted(cli, tmp_path: Path) -> None:
    pets = _pets(tmp_path)
    rows = [[str(f.relative_to(pets)), f.parent.name] for f in _files(pets)]
    table = _write_csv(pets / "labels.csv", ["file", "label"], [*rows, ["cat/gone.png", "cat"]])
    result = cli("train", "--data", table, *FAST, "--out", tmp_path / "run")
    assert "skipped unreadable image" in result.stderr and "gone.png" in result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_images"] == 1


# --- Hugging Face datasets ----------------------------------------------------------------


def _parquet(files: list[Path], multi: bool = False) -> bytes:
    """A split as ``datasets`` itself writes it: an Image column and a ClassLabel one (a
    Sequence of them for multi-label)."""
    import datasets

    label = datasets.ClassLabel(names=["cat", "dog"])
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Sequence(label) if multi else label}
    )
    values = [int(f.parent.name == "dog") for f in files]
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": f.read_bytes(), "path": None} for f in files],
            "label": [[0, 1] if multi else v for v in values],
        },
        features=features,
    )
    out = io.BytesIO()
    ds.to_parquet(out)
    return out.getvalue()


def test_an_hf_dataset_trains_as_its_folder_and_loads_offline_from_the_hub_cache(
    cli, tmp_path: Path
) -> None:
    pets = _pets(tmp_path)
    files = _files(pets)
    train, val = (
        [f for f in files if f.stem[-1] not in "03"],
        [f for f in files if f.stem[-1] in "03"],
    )
    split = tmp_path / "split"
    for name, part in (("train", train), ("val", val)):
        for f in part:
            (split / name / f.parent.name).mkdir(parents=True, exist_ok=True)
            (split / name / f.parent.name / f.name).write_bytes(f.read_bytes())
    repo = {
        "data/train-00000-of-00001.parquet": _parquet(train),
        "data/validation-00000-of-00001.parquet": _parquet(val),
        "README.md": b"---\nlicense: mit\n---\n",
    }
    local = tmp_path / "beans"
    for name, data in repo.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    cli("train", "--data", split, *FAST, "--out", tmp_path / "folder")
    cli("train", "--data", f"hf:{local}", *FAST, "--out", tmp_path / "hf")
    ours, theirs = _metrics(tmp_path / "hf"), _metrics(tmp_path / "folder")
    assert ours["val_accuracy"] == theirs["val_accuracy"] and ours["val_loss"] == theirs["val_loss"]
    assert "zoo:hf:name=" in (tmp_path / "hf" / "config.toml").read_text()
    # Sequence(ClassLabel) is multi-label: parsed as label sets (tests/test_multilabel.py trains
    # on label sets).
    for name, part in (("train", train), ("validation", val)):
        (local / "data" / f"{name}-00000-of-00001.parquet").write_bytes(_parquet(part, True))
    sets = _built(f"hf:{local}")
    assert sets.multi_label and sets.classes == ["cat", "dog"]
    # A Hub dataset already in the Hugging Face cache, read offline (HF_HUB_OFFLINE).
    hub = tmp_path / "hf-home" / "hub"
    cache_entry(hub, "acme/pets", repo, kind="datasets")
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    zoo = [sys.executable, "-m", "zoo"]
    run = subprocess.run(
        [*zoo, "eval", tmp_path / "hf", "--data", "hf:acme/pets", "--no-plots"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "hf" / "eval.json").read_text())["count"] == len(val)
    run = subprocess.run(
        [*zoo, "train", "--data", "hf:acme/nothing", "--out", tmp_path / "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and run.stderr.startswith("error: hf:acme/nothing: cannot load")
    assert run.stderr.count("\n") == 1 and not (tmp_path / "x").exists()


# --- WebDataset shards --------------------------------------------------------------------


def _coded_shards(root: Path, shards: int = 8, per_shard: int = 5) -> list[int]:
    """Shards written by webdataset.ShardWriter whose PNG images carry their own index in
    their pixels (lossless), so a reader can say which samples it saw."""
    import webdataset as wds
    from PIL import Image

    root.mkdir(parents=True)
    keys = list(range(shards * per_shard))
    with wds.ShardWriter(str(root / "train-%06d.tar"), maxcount=per_shard, verbose=0) as w:
        for k in keys:
            pixels = np.full((4, 4, 3), (k // 256, k % 256, 0), dtype=np.uint8)
            out = io.BytesIO()
            Image.fromarray(pixels).save(out, format="PNG")
            w.write({"__key__": f"s{k:05d}", "png": out.getvalue(), "cls": str(k % 2)})
    return keys


def _read_share(url: str, rank: int, queue: multiprocessing.Queue) -> None:
    """One process of two: its batches of two epochs through loader workers, as keys."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    from zoo.data.batches import make_batches

    data = build_splits(resolve_data(url), image_size=(4, 4), seed=0, val_fraction=0.0)
    batches = make_batches(
        data.train, 8, torch.device("cpu"), train=True, workers=2, seed=0, rank=rank, world=2
    )
    for epoch in (0, 1):
        keys = [
            int(x[0, 0, 0]) * 256 + int(x[1, 0, 0]) for xb, _ in batches.epoch(epoch) for x in xb
        ]
        queue.put((epoch, rank, keys))


def test_two_processes_read_every_key_once_per_epoch(tmp_path: Path) -> None:
    keys = _coded_shards(tmp_path / "shards")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    url = f"wds:{tmp_path / 'shards'}"
    procs = [context.Process(target=_read_share, args=(url, r, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    seen = [queue.get(timeout=300) for _ in range(4)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for epoch in (0, 1):
        shares = [k for e, _, k in seen if e == epoch]
        assert sorted(shares[0] + shares[1]) == keys, f"epoch {epoch}"
        assert len(shares[0]) == len(shares[1]) == len(keys) // 2
    orders = {e: next(k for ep, r, k in seen if ep == e and r == 0) for e in (0, 1)}
    assert orders[0] != orders[1]  # each epoch its own order


def test_shards_round_trip_a_folder_locally_and_over_http(cli, tmp_path: Path) -> None:
    pets = _pets(tmp_path)
    shards = tmp_path / "shards"
    cli("shard", pets, shards, "--image-size", "8", "--shard-size", "2KB")
    sizes = json.loads((shards / "sizes.json").read_text())
    assert (shards / "classes.txt").read_text() == "cat\ndog\n"
    assert sum(n for s, n in sizes.items() if s.startswith("train-")) == 12 and len(sizes) >= 3
    cli("train", "--data", pets, *FAST, "--epochs", "2", "--out", tmp_path / "folder")
    cli("train", "--data", f"wds:{shards}", *FAST, "--epochs", "2", "--out", tmp_path / "wds")
    assert (
        _metrics(tmp_path / "wds")["val_accuracy"] == _metrics(tmp_path / "folder")["val_accuracy"]
    )
    # --val-data: validation on another source (a folder without splits: all of it).
    run = cli(
        "train", "--data", f"wds:{shards}", "--val-data", pets, *FAST, "--out", tmp_path / "v"
    )
    assert "12 train / 16 val" in run.stdout
    assert f'val_data = "zoo:folder:root={pets}"' in (tmp_path / "v" / "config.toml").read_text()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(shards))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        served = _built(f"wds:{base}/")
        assert served.classes == ["cat", "dog"] and len(served.train) == 12
        assert sum(1 for _ in served.train) == 12  # read over HTTP by webdataset
        names = sorted(s for s in sizes if s.startswith("val-"))
        last = names[-1].removeprefix("val-").removesuffix(".tar")
        pattern = _built(f"wds:{base}/val-{{000000..{last}}}.tar")
        assert sum(1 for _ in pattern.train) == 4
    finally:
        server.shutdown()
        server.server_close()


def test_bad_shards_fail_in_one_line_and_corrupt_samples_are_skipped(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webdataset as wds

    _coded_shards(tmp_path / "shards", shards=2, per_shard=3)
    result = cli(
        "train", "--data", f"wds:{tmp_path}/none-{{0..3}}.tar", "--out", tmp_path / "r", code=2
    )
    assert "error: no shard matches wds:" in result.stderr and not (tmp_path / "r").exists()
    shards = f"wds:{tmp_path / 'shards'}"
    result = cli("train", "--data", shards, "--nproc", "4", "--out", tmp_path / "r", code=2)
    assert "2 training shards cannot be shared by 4 processes" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "r").exists()
    monkeypatch.setenv("WORLD_SIZE", "4")  # under torchrun, each process checks it too
    with pytest.raises(ZooError, match="2 training shards cannot be shared by 4 processes"):
        _built(f"wds:{tmp_path / 'shards'}")
    monkeypatch.delenv("WORLD_SIZE")
    with wds.ShardWriter(
        str(tmp_path / "shards" / "train-%06d.tar"), start_shard=2, verbose=0
    ) as w:
        w.write({"__key__": "broken", "png": b"not an image", "cls": b"1"})
    data = _built(f"wds:{tmp_path / 'shards'}")
    assert len(data.train) == 7 and sum(1 for _ in data.train) == 6
    assert len(data.train.unreadable()) == 1
