"""Training events: callbacks from an installed plugin distribution, from ``--callback`` and from
Python see every epoch, can stop the run, keep their state across a SIGKILL and ``--resume``,
and a failing one stops the run in one line with the last completed epoch on disk."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from moments import Child
from test_resume import Run, same_tensors

import zoo
from zoo.errors import ZooError
from zoo.models.weights import read_header
from zoo.train import Callback, TrainConfig, Trainer

# A stateful callback plugin: it counts the epochs it saw, keeps a running sum of the training
# loss as a tensor (so its state holds JSON and tensors), rewrites RUN/counter.jsonl from its
# state every epoch, stops after `stop_after` epochs and raises at epoch `fail_at`.
COUNTER = '''
"""A callback that counts epochs."""

import json

import zoo
from zoo.train import Callback


class Counter(Callback):
    def __init__(self, stop_after, fail_at):
        import torch

        self.stop_after, self.fail_at = stop_after, fail_at
        self.seen, self.loss_sum = [], torch.zeros(1, dtype=torch.float64)

    def on_fit_start(self, run):
        run.note(f"counter: starting after {run.epoch} epochs, {len(self.seen)} seen")

    def on_epoch_end(self, run, record):
        if record["epoch"] == self.fail_at:
            raise RuntimeError(f"failing at epoch {record['epoch']} as asked")
        self.seen.append(record["epoch"])
        self.loss_sum += record["train_loss"]
        lines = [json.dumps({"epoch": e}) + "\\n" for e in self.seen]
        (run.out / "counter.jsonl").write_text("".join(lines))
        if self.stop_after and len(self.seen) >= self.stop_after:
            return f"counter saw {len(self.seen)} epochs"
        return None

    def state_dict(self):
        return {"seen": self.seen, "loss_sum": self.loss_sum}

    def load_state_dict(self, state):
        self.seen, self.loss_sum = list(state["seen"]), state["loss_sum"].clone()


def counter(stop_after: int = 0, fail_at: int = 0):
    """Count the epochs; stop after stop_after of them, fail at epoch fail_at (0: never)."""
    return Counter(stop_after, fail_at)


@zoo.hookimpl
def zoo_register_callbacks(register):
    register("counter", counter)
'''

PYPROJECT = """
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-counter"
version = "0.1.0"

[project.entry-points."zoo.plugins"]
acme = "acme_counter"
"""

QUICK = ["--image-size", "8", "--batch-size", "32", "--aug", "hflip", "--ema"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin distribution, installed by pip into its own folder."""
    root = tmp_path_factory.mktemp("counter")
    package = root / "acme-counter"
    (package / "acme_counter").mkdir(parents=True)
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "acme_counter" / "__init__.py").write_text(COUNTER)
    site = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run(
        [*pip, "--no-build-isolation", "--target", str(site), str(package)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


def zoo_env(site: Path, tmp: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "ZOO_CACHE_DIR": str(tmp / "cache")}


def checkpoint_state(out: Path) -> dict[str, Any]:
    state = read_header(out / "checkpoints" / "last.safetensors").state
    assert state is not None
    return state


def test_an_installed_callback_plugin_keeps_its_state_across_sigkill_and_resume(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = zoo_env(site, tmp_path)
    listed = subprocess.run(
        [sys.executable, "-m", "zoo", "list", "callbacks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "counter" in listed.stdout and "acme-counter==0.1.0" in listed.stdout, listed.stderr
    for name in ("early_stopping", "tensorboard"):
        assert name in listed.stdout

    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    monkeypatch.setenv("ZOO_CACHE_DIR", env["ZOO_CACHE_DIR"])
    args = [*QUICK, "--epochs", "3", "--callback", "counter"]
    full, killed, log = tmp_path / "full", tmp_path / "killed", tmp_path / "log.txt"
    Run([*args, "--out", str(full)], log).finish()
    # killed in the second epoch: training runs again after the first epoch's checkpoint
    last = f"{killed}/checkpoints/last.safetensors"
    Child(["train", *args, "--out", str(killed)], log, at="forward", paths=[last]).kill()
    Run(["--resume", str(killed)], log).finish()
    assert "counter: starting after 1 epochs, 1 seen" in log.read_text()

    # the callback saw every epoch once, and its state (a list and a tensor) was restored
    for out in (full, killed):
        lines = (out / "counter.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
        assert checkpoint_state(out)["callbacks"] == checkpoint_state(full)["callbacks"]
    # the whole training state, the callback's tensor included, is bit-identical
    assert same_tensors(
        full / "checkpoints/last.safetensors", killed / "checkpoints/last.safetensors"
    )
    assert same_tensors(full / "model.safetensors", killed / "model.safetensors")


def load_counter(site: Path) -> Any:
    spec = importlib.util.spec_from_file_location("acme_counter", site / "acme_counter/__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fast(out: Path, **changes: Any) -> TrainConfig:
    return TrainConfig(out=str(out), image_size=8, batch_size=128, epochs=4).replace(**changes)


def test_a_callback_stops_the_run_and_the_summary_says_why(
    zoo_plugins, site, cli, tmp_path
) -> None:
    zoo_plugins.register(load_counter(site), name="acme")
    out = tmp_path / "run"
    result = cli("train", "--image-size", "8", "--batch-size", "128", "--epochs", "4",
                 "--callback", "counter:stop_after=2", "--out", out)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "counter saw 2 epochs" and summary["epochs_completed"] == 2
    assert summary["stopped_by"] == "acme:counter"
    assert read_header(out / "model.safetensors").info.epoch == 2
    said = result.stdout.splitlines()
    assert "stopped after epoch 2: counter saw 2 epochs (acme:counter)" in said
    assert said.index("stopped after epoch 2: counter saw 2 epochs (acme:counter)") == len(said) - 3


def test_a_failing_callback_stops_the_run_naming_its_plugin(zoo_plugins, site, cli, tmp_path):
    zoo_plugins.register(load_counter(site), name="acme")
    out = tmp_path / "run"
    result = cli("train", "--callback", "counter:fail_at=2", *QUICK, "--out", out, code=1)
    assert result.stderr == (
        "error: callback 'acme:counter' (acme (test)) failed in on_epoch_end: RuntimeError: "
        "failing at epoch 2 as asked; epoch 1 is the last saved (continue with "
        f"`zoo train --resume {out}`)\n"
    )
    assert checkpoint_state(out)["epoch"] == 1
    assert read_header(out / "model.safetensors").info.epoch == 1


class Recorder(Callback):
    """Notes every event it receives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_fit_start(self, run: Any) -> None:
        self.events.append(("start", (run.epoch, run.epochs, run.out.is_dir(), run.world_size)))

    def on_epoch_end(self, run: Any, record: dict[str, Any]) -> str | None:
        assert run.history[-1] == record and run.epoch == record["epoch"]
        assert isinstance(run.net, torch.nn.Module) and run.info.classes[:2] == ["0", "1"]
        self.events.append(("epoch", (record["epoch"], run.best.epoch)))
        return None

    def on_fit_end(self, run: Any, summary: dict[str, Any]) -> None:
        self.events.append(("end", summary["epochs_completed"]))

    def close(self) -> None:
        self.events.append(("close", None))


def test_python_callbacks_see_the_events_in_order(tmp_path: Path) -> None:
    recorder = Recorder()
    Trainer(fast(tmp_path / "run", epochs=2), callbacks=[recorder]).fit()
    assert recorder.events[0] == ("start", (0, 2, True, 1))
    assert [e for e, _ in recorder.events] == ["start", "epoch", "epoch", "end", "close"]
    assert [v[0] for e, v in recorder.events if e == "epoch"] == [1, 2]


class FailsAtStart(Recorder):
    def on_fit_start(self, run: Any) -> None:
        raise ValueError("no tracking server")


def test_a_callback_failing_at_start_trains_nothing_and_is_closed(tmp_path: Path) -> None:
    failing = FailsAtStart()
    with pytest.raises(ZooError) as raised:
        Trainer(fast(tmp_path / "run"), callbacks=[failing]).fit()
    assert str(raised.value) == (
        "callback FailsAtStart failed in on_fit_start: ValueError: no tracking server"
    )
    assert raised.value.exit_code == 1
    assert failing.events == [("close", None)]
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_unknown_callbacks_are_refused_before_anything_is_written(cli, tmp_path: Path) -> None:
    result = cli("train", "--callback", "early_stoping", "--out", tmp_path / "run", code=2)
    assert result.stderr.startswith("error: unknown callback 'early_stoping'; did you mean")
    assert not (tmp_path / "run").exists()
    result = cli("train", "--callback", "tensorboard:every=2", "--out", tmp_path / "run", code=2)
    assert "callback 'zoo:tensorboard': unknown parameter 'every'" in result.stderr
    assert not (tmp_path / "run").exists()


OLD_PATHS = """
from zoo.hookspecs import Register, hookimpl
from zoo.data import DataSplits, ImageTensors


def stripes(image_size, seed, val_fraction):
    import torch

    h, w = image_size or (8, 8)
    images = torch.zeros(40, 1, h, w, dtype=torch.uint8)
    labels = torch.arange(40) % 2
    images[labels == 1, :, ::2] = 255
    return DataSplits(ImageTensors(images, labels), None, ["plain", "striped"], (h, w), 1)


@hookimpl
def zoo_register_datasets(register: Register) -> None:
    register("stripes", stripes)
"""


def test_a_plugin_written_against_the_old_import_paths_still_works(tmp_path: Path) -> None:
    # zoo 0.1's plugins imported zoo.hookspecs and zoo.data: both paths remain.
    (tmp_path / "old_plugin.py").write_text(textwrap.dedent(OLD_PATHS))
    env = {
        **os.environ,
        "ZOO_PLUGINS": str(tmp_path / "old_plugin.py"),
        "ZOO_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [sys.executable, "-m", "zoo", "train", "--data", "stripes", "--epochs", "1"]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert zoo.load(tmp_path / "run").classes == ["plain", "striped"]
