"""``zoo runs``: real run directories (complete, stopped early, interrupted, failed, running)
listed with the status their files and lock give evidence of; sorting, filtering, the stable
``--json``; ``zoo runs compare``; and hundreds of runs listed without importing torch."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zoo.errors import ZooError
from zoo.train import Callback, TrainConfig, Trainer
from zoo.train.trainer import Interrupted

# The documented fields of every `zoo runs --json` row (docs/tracking.md).
FIELDS = {
    "name",
    "path",
    "arch",
    "data",
    "status",
    "stopped",
    "error",
    "epochs_done",
    "epochs_planned",
    "best",
    "images_per_second",
    "started",
    "sorted_by",
}


class At(Callback):
    """At the end of epoch ``epoch``: stop, interrupt (as Ctrl-C would) or fail."""

    def __init__(self, epoch: int, action: str) -> None:
        self.epoch, self.action = epoch, action

    def on_epoch_end(self, run: Any, record: dict[str, Any]) -> str | None:
        if record["epoch"] != self.epoch:
            return None
        if self.action == "interrupt":
            raise KeyboardInterrupt
        if self.action == "fail":
            raise RuntimeError("the disk went away")
        return "enough"


def train(out: Path, epochs: int, *callbacks: Callback) -> None:
    cfg = TrainConfig(out=str(out), epochs=epochs, image_size="8", batch_size=128)
    Trainer(cfg, callbacks=callbacks).fit()


@pytest.fixture(scope="module")
def runs(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run directory of each kind, trained for real (one or two epochs each)."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(small_run, root / "complete")
    train(root / "stopped", 3, At(1, "stop"))
    with pytest.raises(Interrupted):
        train(root / "interrupted", 2, At(2, "interrupt"))
    with pytest.raises(ZooError, match="the disk went away"):
        train(root / "failed", 1, At(1, "fail"))
    shutil.copytree(root / "interrupted", root / "more" / "running")
    return root


@pytest.fixture
def lock(runs: Path):
    """The lock `zoo train` holds on a run while it trains, held by this test's process."""
    with open(runs / "more" / "running" / ".zoo.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
        fcntl.flock(f, fcntl.LOCK_UN)


def test_each_run_has_the_status_its_files_give_evidence_of(cli, runs: Path, lock) -> None:
    rows = {r["name"]: r for r in json.loads(cli("runs", runs, "--json").stdout)}
    assert {name: r["status"] for name, r in rows.items()} == {
        "complete": "complete",
        "stopped": "stopped early",
        "interrupted": "interrupted",
        "failed": "failed",
        "more/running": "running",
    }
    assert all(set(r) == FIELDS for r in rows.values())
    assert rows["stopped"]["stopped"] == "enough"
    assert "RuntimeError: the disk went away" in rows["failed"]["error"]
    assert {name: (r["epochs_done"], r["epochs_planned"]) for name, r in rows.items()} == {
        "complete": (1, 1),
        "stopped": (1, 3),
        "interrupted": (1, 2),  # epoch 2 was interrupted before it was saved
        "failed": (0, 1),
        "more/running": (1, 2),
    }
    assert rows["failed"]["best"] is None
    best = rows["interrupted"]["best"]  # no summary yet: the best so far of --monitor
    assert best["metric"] == "val_accuracy" and best["epoch"] == 1 and 0 < best["value"] < 1
    assert (
        rows["complete"]["best"]
        == json.loads((runs / "complete" / "summary.json").read_text())["best"]
    )
    for r in rows.values():
        assert r["arch"] == "zoo:simplecnn" and r["data"] == "zoo:digits" and r["started"]
    assert (
        rows["complete"]["images_per_second"] > 0 and rows["interrupted"]["images_per_second"] > 0
    )

    table = cli("runs", runs).stdout
    assert table.splitlines()[0].split() == [
        "run", "arch", "data", "epochs", "best", "status", "img/s", "started",
    ]  # fmt: skip
    assert "1/3" in table and "stopped early" in table and "more/running" in table
    assert f"5 runs in {runs}: 1 complete, 1 stopped early, 1 failed, 1 running, 1 interrupted" in (
        " ".join(table.split())
    )


def test_sort_filter_and_the_default_folder(
    cli, runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def names(*args: str) -> list[str]:
        return [r["name"] for r in json.loads(cli("runs", runs, "--json", *args).stdout)]

    rows = json.loads(cli("runs", runs, "--json", "--sort", "val_loss").stdout)
    losses = [r["sorted_by"]["value"] for r in rows if r["sorted_by"]]
    assert losses == sorted(losses) and len(losses) == 4  # the failed run has none: last
    assert rows[-1]["name"] == "failed" and rows[-1]["sorted_by"] is None
    assert names("--sort", "name") == sorted(names())
    assert sorted(names("--filter", "*ed")) == ["failed", "interrupted", "stopped"]
    bad = cli("runs", runs, "--sort", "val_los", code=2)
    assert bad.stderr.startswith("error: --sort val_los: no run has this metric or column; ")
    assert "did you mean val_loss" in bad.stderr

    monkeypatch.chdir(tmp_path)
    assert cli("runs").stdout == "no runs in runs/\n"
    shutil.copytree(runs / "stopped", tmp_path / "runs" / "stopped")
    assert [r["name"] for r in json.loads(cli("runs", "--json").stdout)] == ["stopped"]
    assert cli("runs", "nowhere", code=2).stderr == "error: nowhere is not a directory\n"


def test_compare_draws_the_curves_and_shows_the_settings_that_differ(
    cli, runs: Path, tmp_path: Path
) -> None:
    png = tmp_path / "both.png"
    result = cli("runs", "compare", runs / "complete", runs / "stopped", "--out", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines[0] == "complete stopped"
    assert lines[1:3] == ["status complete stopped early", "epochs done 1/1 1/3"]
    assert lines[3].startswith("best val_accuracy 0.")
    rows = {line.split()[0] for line in lines[4:-1]}  # the settings that differ
    assert rows == {"epochs"}, result.stdout
    assert lines[-1] == f"wrote {png}"

    again = cli("runs", "compare", runs / "complete", runs / "stopped", "--out", png, code=2)
    assert again.stderr == f"error: {png} exists; add --overwrite to replace it\n"
    data = json.loads(
        cli("runs", "compare", runs / "complete", runs / "stopped", "-o", png, "--overwrite",
            "--metric", "val_loss", "--json").stdout
    )  # fmt: skip
    assert data["differences"]["epochs"] == [1, 3] and data["metric"] == "val_loss"
    assert cli("runs", "compare", runs / "complete", code=2).stderr.startswith(
        "error: zoo runs compare needs at least two runs"
    )
    wrong = cli("runs", "compare", runs / "complete", runs / "stoped", "-o", png, code=2)
    assert wrong.stderr == f"error: {runs / 'stoped'} is not a zoo run directory\n"
    metric = cli("runs", "compare", runs / "complete", runs / "stopped", "-m", "val_acc", code=2)
    assert "did you mean val_accuracy" in metric.stderr


def fake_run(path: Path, n: int) -> None:
    """A small run directory as zoo writes it (no weights: zoo runs never reads them)."""
    path.mkdir(parents=True)
    (path / "config.toml").write_text(
        f'zoo_version = "0.1.0"\narch = "simplecnn"\ndata = "digits"\nepochs = 20\nlr = {n}e-4\n'
    )
    records = [
        {"epoch": e, "train_loss": 1 / e, "val_accuracy": 0.5 + e / 100 + n / 1e5, "seconds": 1.0,
         "images_per_second": 1000.0 + n}
        for e in range(1, 21)
    ]  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (path / "run.json").write_text(json.dumps({"started": f"2026-11-21T10:{n // 60:02d}:00"}))
    if n % 3:
        best = {"metric": "val_accuracy", "value": 0.7 + n / 1e5, "epoch": 20}
        summary = {
            "epochs_completed": 20,
            "stopped": None,
            "images_per_second": 1000.0,
            "best": best,
        }
        (path / "summary.json").write_text(json.dumps(summary))


def test_hundreds_of_runs_are_listed_without_importing_torch(tmp_path: Path) -> None:
    for n in range(300):
        fake_run(tmp_path / "runs" / f"group-{n % 7}" / f"run-{n:03d}", n)
    code = (
        "import sys\nfrom zoo.cli import main\n"
        "sys.argv = ['zoo', 'runs', '--json', '--sort', 'val_accuracy']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n"
    )
    env = {**os.environ, "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.stderr.strip().endswith("TORCH False"), result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 300 and rows[0]["name"] == "group-5/run-299"
    assert {r["status"] for r in rows} == {"complete", "interrupted"}


def test_a_damaged_run_is_named_and_the_others_are_listed(cli, tmp_path: Path) -> None:
    """A run whose records cannot be read (bytes that are not UTF-8, a metrics line that is not
    an object, a config.toml that is not TOML) is named in one line and left out; the others
    are listed and compared. One damaged run asked for alone is one error line, exit code 2."""
    root = tmp_path / "runs"
    for n in range(3):
        fake_run(root / f"run-{n}", n)
    metrics = root / "run-1" / "metrics.jsonl"
    at = metrics.stat().st_size + len(b'{"epoch": 21, "note": "')
    with open(metrics, "ab") as f:
        f.write(b'{"epoch": 21, "note": "\xff\xfe"}\n')
    listed = cli("runs", root)
    damaged = (
        f"{root / 'run-1'} is damaged: metrics.jsonl cannot be read: not UTF-8 text (byte {at})"
    )
    assert listed.stderr == f"warning: {damaged}; it is left out\n"
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:-1]]
    assert names == ["run-0", "run-2"]
    assert listed.stdout.splitlines()[-1].endswith("; 1 damaged, left out")
    rows = json.loads(cli("runs", root, "--json").stdout)
    assert [r["name"] for r in rows] == ["run-0", "run-2"]

    alone = cli("runs", root / "run-1", code=2)
    assert alone.stderr == f"error: {damaged}\n"
    assert alone.stdout == ""  # not "no runs in ..."

    png = tmp_path / "compare.png"
    three = cli("runs", "compare", root / "run-0", root / "run-1", root / "run-2", "-o", png)
    assert three.stderr == f"warning: {damaged}; it is left out\n"
    assert three.stdout.splitlines()[0].split() == ["run-0", "run-2"]
    two = cli("runs", "compare", root / "run-0", root / "run-1", "-o", tmp_path / "2.png", code=2)
    assert two.stderr == f"error: {damaged}\n"  # not "they have no metrics yet"

    (root / "run-0" / "metrics.jsonl").write_text('{"epoch": 1, "val_accuracy": 0.5}\n[1, 2]\n')
    (root / "run-2" / "config.toml").write_text("arch = [\n")
    both = cli("runs", root, code=2)
    assert both.stderr.splitlines() == [
        f"warning: {root / 'run-0'} is damaged: metrics.jsonl line 2 holds an array, not a JSON "
        "object; it is left out",
        f"warning: {damaged}; it is left out",
        f"warning: {root / 'run-2'} is damaged: config.toml is not valid TOML: "
        "Invalid value (at end of document); it is left out",
        f"error: every run in {root} is damaged",
    ]
    bad_config = cli("runs", root / "run-2", code=2)
    assert bad_config.stderr == (
        f"error: {root / 'run-2'} is damaged: config.toml is not valid TOML: "
        "Invalid value (at end of document)\n"
    )  # not "no runs in ..."


def test_a_hand_written_config_is_not_a_run(cli, tmp_path: Path) -> None:
    """A folder holding only a config.toml that zoo did not write is not a run: zoo runs does
    not list it, and zoo train --out does not call it a previous run to resume."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.toml").write_text("epochs = 3\n")
    assert cli("runs", tmp_path).stdout == f"no runs in {tmp_path}\n"
    refused = cli("train", "--out", folder, "--epochs", "1", code=2)
    assert refused.stderr == (
        f"error: --out {folder} holds a config.toml that zoo did not write: it is not a zoo run; "
        "add --overwrite to replace it or choose another directory\n"
    )
    assert (folder / "config.toml").read_text() == "epochs = 3\n"
