"""The zoo-mlflow plugin against real MLflow stores (SQLite databases, read back with
MlflowClient): what a run logs; resume after SIGKILL or an interrupt without duplicate points;
one log for a two-process run; the status of an interrupted or failed run; a store that refuses
writes mid-run, and one that is unreachable at start."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from moments import Child
from test_resume import Run

from zoo.errors import ZooError
from zoo.train import Callback, TrainConfig, Trainer
from zoo.train.config import load_toml_values
from zoo.train.trainer import Interrupted

mlflow = pytest.importorskip("mlflow")

QUICK = ["--image-size", "8", "--batch-size", "128"]
ARTIFACTS = {
    "README.md",
    "config.json",
    "config.toml",
    "metrics.csv",
    "metrics.jsonl",
    "model.safetensors",
    "summary.json",
}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow database, made once (creating one takes seconds)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh copy of the database; artifacts go to ./mlruns, in the test's folder."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def only_run(uri: str, experiment: str = "zoo"):
    client = mlflow.MlflowClient(uri)
    found = client.search_experiments()
    assert [e.name for e in found if e.name != "Default"] == [experiment]
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def steps(client, run) -> dict[str, list[int]]:
    """Every metric's logged steps, in order (a duplicate point shows as a repeated step)."""
    return {
        key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
    }


def saved_params(out: Path) -> dict[str, str]:
    """config.toml as MLflow params: strings as they are, everything else as JSON."""
    values = load_toml_values(out / "config.toml")
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def test_a_run_logs_its_config_every_epoch_and_its_files(cli, store: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    spec = f"mlflow:experiment=digits,tracking_uri={store},run_name=first"
    cli("train", *QUICK, "--epochs", "2", "--callback", spec, "--out", out)

    client, run = only_run(store, "digits")
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert run.data.params == saved_params(out)
    assert (
        run.data.params["lr"] == "0.001" and run.data.params["callback"] == f'["mlflow:{spec}"]'
    )  # recorded qualified
    records = steps(client, run)
    assert {"train_loss", "val_accuracy", "val_f1", "lr", "images_per_second"} <= set(records)
    assert all(logged == [1, 2] for logged in records.values()), records
    tags = run.data.tags
    assert tags["zoo.architecture"] == "zoo:simplecnn" and tags["zoo.dataset"] == "zoo:digits"
    assert tags["zoo.world_size"] == "1" and tags["zoo.device"] == "cpu"
    assert tags["zoo.run_dir"] == str(out.resolve())
    assert "zoo-mlflow==" in tags["zoo.plugins"] and "zoo==" in tags["zoo.plugins"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == ARTIFACTS
    local = Path(run.info.artifact_uri.removeprefix("file://")) / "model.safetensors"
    assert local.read_bytes() == (out / "model.safetensors").read_bytes()


def test_sigkill_then_resume_continues_the_same_mlflow_run_without_duplicates(
    store: str, tmp_path: Path
) -> None:
    out, log = tmp_path / "run", tmp_path / "log.txt"
    train = [*QUICK, "--epochs", "3", "--callback", f"mlflow:tracking_uri={store}"]
    # 1. Killed while epoch 2's weights are written: epoch 2 is logged to MLflow, not saved;
    #    the MLflow run's id is in epoch 1's checkpoint.
    weights = [f"{out}/.model.safetensors.*.tmp"]
    Child(["train", *train, "--out", str(out)], log, at="fsync", paths=weights, count=2).kill()
    assert (out / "checkpoints" / "last.safetensors").is_file()
    # 2. Finished by two processes: epoch 2 is trained and reported again, logged once.
    Run(["--resume", str(out), "--nproc", "2", "--device", "cpu"], log).finish()

    client, run = only_run(store)
    assert run.info.status == "FINISHED"
    assert all(logged == [1, 2, 3] for logged in steps(client, run).values()), steps(client, run)
    # MLflow params cannot change: the settings the last resume changed are in a tag
    changed = {"device": "cpu", "nproc": "2"}
    assert json.loads(run.data.tags["zoo.resumed_with"]) == changed
    assert run.data.params == {**saved_params(out), "device": "auto", "nproc": "1"}
    assert run.data.tags["zoo.world_size"] == "2"  # rank 0 alone logged
    assert "warning: mlflow" not in log.read_text()


# A real store that refuses writes from epoch 2 on, as a full disk or a revoked grant would.
REFUSE = """
CREATE TRIGGER refuse_metrics BEFORE INSERT ON metrics WHEN NEW.step >= 2
BEGIN SELECT RAISE(ABORT, 'writes refused'); END;
CREATE TRIGGER refuse_end BEFORE UPDATE ON runs WHEN NEW.status = 'FINISHED'
BEGIN SELECT RAISE(ABORT, 'writes refused'); END;
"""


def test_a_store_refusing_writes_mid_run_warns_once_per_epoch(
    cli, store: str, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.executescript(REFUSE)
    out = tmp_path / "run"
    result = cli(
        "train", *QUICK, "--epochs", "3", "--callback", f"mlflow:tracking_uri={store}", "--out", out
    )
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert [w.split(f" to {store}: ")[0] for w in warnings] == [
        "warning: mlflow: epoch 2 not logged",
        "warning: mlflow: epoch 3 not logged",
        "warning: mlflow: the end of the run not logged",
    ], result.stdout
    assert all(": IntegrityError: writes refused" in w for w in warnings), warnings
    assert (out / "summary.json").is_file() and "done 3 epochs" in result.stdout
    client, run = only_run(store)
    assert run.info.status == "RUNNING"
    assert all(logged == [1] for logged in steps(client, run).values())


def test_an_unreachable_tracking_server_fails_in_one_line_before_training(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    uri = f"http://127.0.0.1:{port}"
    result = cli("train", *QUICK, "--callback", f"mlflow:tracking_uri={uri}", "--out", out, code=2)
    assert result.stderr.startswith(
        f"error: callback mlflow: cannot reach the tracking store {uri}: "
    )
    assert result.stderr.count("\n") == 1 and "epoch" not in result.stdout
    assert not out.exists()


def test_a_store_mlflow_refuses_passes_its_explanation_on(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "run"
    result = cli("train", *QUICK, "--callback", "mlflow", "--out", out, code=2)
    import mlflow

    with pytest.raises(mlflow.exceptions.MlflowException) as refused:  # MLflow's own words
        mlflow.MlflowClient(tracking_uri=uri)
    assert "MLFLOW_ALLOW_FILE_STORE" in str(refused.value)
    assert result.stderr == (
        f"error: callback mlflow: cannot use the tracking store {uri}: {refused.value}\n"
    )
    assert not out.exists()


class Raise(Callback):
    """Ends the run at its first epoch's end: as Ctrl-C would, or with an error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def on_epoch_end(self, run: Any, record: dict[str, Any]) -> str | None:
        raise self.error


def test_an_interrupted_run_ends_killed_a_failed_one_failed_and_resuming_continues_it(
    store: str, tmp_path: Path
) -> None:
    def config(name: str, **changes: Any) -> TrainConfig:
        spec = f"mlflow:tracking_uri={store},run_name={name}"
        return TrainConfig(out=str(tmp_path / name), epochs=2, image_size="8", batch_size=128,
                           callback=[spec]).replace(**changes)  # fmt: skip

    client = mlflow.MlflowClient(store)
    for name, error, caught in [
        ("interrupted", KeyboardInterrupt(), Interrupted),
        ("failed", RuntimeError("out of disk"), ZooError),
    ]:
        with pytest.raises(caught):  # at epoch 1's end: logged to MLflow, never saved
            Trainer(config(name), callbacks=[Raise(error)]).fit()
    experiment = client.get_experiment_by_name("zoo").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([experiment])}
    assert {name: r.info.status for name, r in runs.items()} == {
        "interrupted": "KILLED",
        "failed": "FAILED",
    }
    # No checkpoint holds the MLflow run's id: the resumed run finds it by its run_dir tag,
    # and logs epoch 1 (trained again) only once.
    Trainer(config("interrupted", resume=str(tmp_path / "interrupted"))).fit()
    resumed = client.get_run(runs["interrupted"].info.run_id)
    assert resumed.info.status == "FINISHED" and len(client.search_runs([experiment])) == 2
    assert all(logged == [1, 2] for logged in steps(client, resumed).values())
