"""Runs killed at any moment (SIGKILL, for real) resume to the weights of uninterrupted ones;
an interrupt never splits an epoch's files; resume refuses what it cannot continue and then
touches nothing."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from moments import Child
from safetensors.torch import load_file

import zoo
from zoo.models import weights
from zoo.models.weights import read_header
from zoo.train.config import TrainConfig
from zoo.train.resume import resume_config
from zoo.train.trainer import Trainer

# Everything that carries state across epochs: AdamW moments, a warmup+cosine schedule,
# accumulation, clipping, EMA, dropout and augmentation randomness, per-epoch checkpoints.
STATEFUL = [
    "--image-size",
    "8",
    "--batch-size",
    "16",
    "--epochs",
    "4",
    "--optimizer",
    "adamw",
    "--weight-decay",
    "0.01",
    "--scheduler",
    "cosine:warmup_epochs=1",
    "--accum-steps",
    "2",
    "--clip-grad",
    "1.0",
    "--ema",
    "--ema-decay",
    "0.9",
    "--aug",
    "hflip",
    "--keep",
    "2",
]
TIMING = ("seconds", "images_per_second", "rss_mb")


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def same_tensors(a: Path, b: Path) -> bool:
    x, y = tensors(a), tensors(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def partial_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob(".*.tmp"))


class Run:
    """``python -m zoo train`` in a subprocess, its output in a log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("a") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zoo", "train", *args], stdout=f, stderr=f
            )

    def finish(self) -> None:
        assert self.proc.wait(timeout=600) == 0, self.log.read_text()


def test_sigkill_at_any_moment_then_resume_gives_bit_identical_weights(tmp_path: Path) -> None:
    full, out, log = tmp_path / "full", tmp_path / "killed", tmp_path / "log.txt"
    Run([*STATEFUL, "--out", str(full)], log).finish()

    # 1. While the first epoch's weights are being written (synced to their temporary file,
    #    not renamed): no checkpoint exists yet, only the run's config.toml, and the resumed
    #    run starts over from the first epoch.
    weights = [f"{out}/.model.safetensors.*.tmp", f"{out}/.model_ema.safetensors.*.tmp"]
    Child(["train", *STATEFUL, "--out", str(out)], log, at="fsync", paths=weights).kill()
    assert not (out / "checkpoints" / "last.safetensors").exists()
    # The killed run's lock file stays, but its lock died with it: it does not block resume.
    assert (out / ".zoo.lock").is_file()
    resume = ["train", "--resume", str(out)]
    # 2. While a checkpoint (best, epoch-N or last) is being written.
    Child(resume, log, at="fsync", paths=[f"{out}/checkpoints/.*.tmp"]).kill()
    # 3. In the middle of an epoch: training again after the first epoch's checkpoint.
    last = f"{out}/checkpoints/last.safetensors"
    Child(resume, log, at="forward", paths=[last]).kill()
    assert read_header(out / "checkpoints" / "last.safetensors").state["epoch"] == 1
    Run(["--resume", str(out)], log).finish()

    assert same_tensors(full / "model.safetensors", out / "model.safetensors")
    assert same_tensors(full / "model_ema.safetensors", out / "model_ema.safetensors")
    # the whole training state too: optimizer moments, schedule, EMA, random generators
    assert same_tensors(full / "checkpoints/last.safetensors", out / "checkpoints/last.safetensors")
    assert records(out) == records(full)  # every epoch once, with the same metrics
    assert partial_files(out) == []  # what the kills left was cleaned up on resume
    assert not (out / ".zoo.lock").exists()  # released at the end
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "best.safetensors",
        "epoch-0003.safetensors",
        "epoch-0004.safetensors",
        "last.safetensors",
    ]


def test_sigterm_while_an_epoch_is_written_lets_the_epoch_finish(tmp_path: Path) -> None:
    # A scheduler's SIGTERM arriving mid-write is held until the epoch's files are all written:
    # the weights, the checkpoint, the metrics and the message agree on the epoch.
    out, log = tmp_path / "run", tmp_path / "log.txt"
    args = ["train", "--image-size", "8", "--batch-size", "16", "--epochs", "50", "--out", str(out)]
    # SIGTERM arrives while the second epoch's weights are synced to their temporary file
    run = Child(args, log, at="fsync", paths=[f"{out}/.model.safetensors.*.tmp"], count=2)
    run.signal_and_go_on(signal.SIGTERM)
    assert run.wait() == 130, log.read_text()
    epoch = read_header(out / "model.safetensors").info.epoch
    assert read_header(out / "checkpoints" / "last.safetensors").state["epoch"] == epoch
    assert len(records(out)) == epoch
    assert f"the weights of epoch {epoch} are in" in log.read_text()
    assert partial_files(out) == []


def fast(out: Path, **changes: object) -> TrainConfig:
    return TrainConfig(out=str(out), image_size="8", batch_size=128, epochs=2).replace(**changes)


def test_resume_ignores_and_removes_partial_files(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(fast(out, epochs=1)).fit()
    last = out / "checkpoints" / "last.safetensors"
    # what a kill during atomic writes leaves: half-written temporary files beside the targets
    half = last.read_bytes()[: last.stat().st_size // 2]
    stray = [
        out / "checkpoints" / ".last.safetensors.k2j4v9.tmp",
        out / "checkpoints" / ".epoch-0002.safetensors.x81bqa.tmp",
        out / ".model.safetensors.0q9wz1.tmp",
        out / ".metrics.jsonl.aa11bb.tmp",
    ]
    for path in stray:
        path.write_bytes(half)
    mine = out / ".notes.tmp"  # not one of zoo's files: left alone
    mine.write_text("keep me")
    cli("train", "--resume", out, "--epochs", "2")
    assert not any(p.exists() for p in stray) and mine.read_text() == "keep me"
    Trainer(fast(tmp_path / "straight")).fit()
    assert same_tensors(out / "model.safetensors", tmp_path / "straight" / "model.safetensors")


def test_resume_of_a_run_killed_before_its_first_checkpoint(cli, tmp_path: Path) -> None:
    # What a kill in the first epoch leaves: the run's config.toml and nothing else.
    out = tmp_path / "run"
    Trainer(fast(out, seed=4)).fit()
    for path in out.iterdir():
        if path.name != "config.toml":
            path.unlink() if path.is_file() else shutil.rmtree(path)
    result = cli("train", "--resume", out)
    assert "no epoch of this run had completed: starting from the first" in result.stdout
    Trainer(fast(tmp_path / "straight", seed=4)).fit()
    assert same_tensors(out / "model.safetensors", tmp_path / "straight" / "model.safetensors")


def test_reduce_on_plateau_state_survives_resume(tmp_path: Path) -> None:
    # Clipping the gradients to nothing keeps val_loss flat, so the rate halves every epoch
    # past the first; a resumed run must carry on from the reduced rate and the plateau counts.
    frozen = dict(
        optimizer="sgd:momentum=0",
        lr=0.01,
        clip_grad=1e-30,
        monitor="val_loss",
        scheduler="plateau:patience=0,factor=0.5",
    )
    full = Trainer(fast(tmp_path / "full", epochs=4, **frozen)).fit()
    Trainer(fast(tmp_path / "part", epochs=2, **frozen)).fit()
    resumed = Trainer(resume_config(tmp_path / "part", {"epochs": 4})).fit()
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in full.history]
    assert [r["lr"] for r in full.history] == pytest.approx([0.01, 0.01, 0.005, 0.0025])
    # the summary covers the whole run, not only the resumed epochs
    assert resumed.summary["epochs_completed"] == 4
    seconds = sum(r["seconds"] for r in resumed.history)
    assert resumed.summary["train_seconds"] == pytest.approx(seconds, abs=1e-3)


def test_more_epochs_on_resume_stretch_the_schedule(tmp_path: Path) -> None:
    # A one-epoch cosine schedule ends at a rate of 0; resumed with --epochs 3, the schedule is
    # stretched over three epochs, so the later epochs train (and the rate ends at 0 again).
    Trainer(fast(tmp_path / "run", epochs=1, scheduler="cosine")).fit()
    first = tensors(tmp_path / "run" / "model.safetensors")
    resumed = Trainer(resume_config(tmp_path / "run", {"epochs": 3})).fit()
    lrs = [r["lr"] for r in resumed.history]
    assert lrs[0] == pytest.approx(0.0, abs=1e-12) and lrs[1] > 1e-4
    assert lrs[2] == pytest.approx(0.0, abs=1e-12)
    after = tensors(tmp_path / "run" / "model.safetensors")
    assert any(not torch.equal(first[k], after[k]) for k in first)


def test_resume_of_a_fine_tuning_run_needs_not_its_init_source(tmp_path: Path) -> None:
    Trainer(fast(tmp_path / "source", epochs=1)).fit()
    Trainer(fast(tmp_path / "straight", init=str(tmp_path / "source"))).fit()
    Trainer(fast(tmp_path / "tuned", epochs=1, init=str(tmp_path / "source"))).fit()
    shutil.rmtree(tmp_path / "source")
    Trainer(resume_config(tmp_path / "tuned", {"epochs": 2})).fit()
    straight, tuned = tmp_path / "straight", tmp_path / "tuned"
    assert same_tensors(tuned / "model.safetensors", straight / "model.safetensors")


def test_resume_refuses_what_it_cannot_continue_and_touches_nothing(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(fast(out, epochs=1)).fit()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def refused(*args: object, message: str) -> None:
        result = cli("train", *args, code=2)
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    refused("--resume", out, "--out", tmp_path / "elsewhere", message="leave out --out")
    refused("--resume", out, "--seed", "1", message="seed differs from the run's")
    refused("--resume", out, "--batch-size", "64", message="batch_size differs")
    refused("--resume", out, "--monitor", "val_loss", message="monitor differs")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.toml").write_text('arch = "simplecnn"\n')  # not zoo's
    refused("--resume", tmp_path / "other", message="not a zoo run directory")
    # a damaged checkpoint (not written by zoo's atomic writes: a truncated copy)
    last = out / "checkpoints" / "last.safetensors"
    last.unlink()  # a file of its own: zoo may have hard-linked best to the same bytes
    last.write_bytes(before[last][:1000])
    before[last] = last.read_bytes()
    refused("--resume", out, message="is not a readable safetensors file")


GATE = textwrap.dedent(
    """
    import os
    import time

    import zoo
    from zoo.train import Callback


    class Gate(Callback):
        \"\"\"Holds a run at its start (directory locked, config written) until PATH exists.\"\"\"

        def __init__(self, path: str) -> None:
            self.path = path

        def on_fit_start(self, run):
            while not os.path.exists(self.path):
                time.sleep(0.02)


    @zoo.hookimpl
    def zoo_register_callbacks(register):
        register("gate", Gate)
    """
)


def test_a_second_writer_of_a_run_directory_is_refused(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gate_plugin.py").write_text(GATE)
    monkeypatch.setenv("ZOO_PLUGINS", str(tmp_path / "gate_plugin.py"))
    out, release, log = tmp_path / "run", tmp_path / "release", tmp_path / "log.txt"
    quick = ["--image-size", "8", "--batch-size", "128", "--epochs", "1", "--out", str(out)]
    first = Run([*quick, "--callback", f"gate:path={release}"], log)
    config = out / "config.toml"
    deadline = time.monotonic() + 300
    while not config.is_file():  # the first run holds the lock, its config written
        assert first.proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    before = config.read_text()
    # Started while the first one runs: refused in one line naming the holder, nothing touched.
    second = subprocess.run(
        [sys.executable, "-m", "zoo", "train", *quick, "--arch", "simplecnn:hidden=16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 2, second.stderr
    assert second.stderr.startswith(
        f"error: --out {out} is being written by another zoo process "
        f"(pid {first.proc.pid} on {socket.gethostname()}, since "
    )
    assert "zoo train --image-size 8" in second.stderr and second.stderr.count("\n") == 1
    assert config.read_text() == before
    # So is a resume of it.
    refused = cli("train", "--resume", out, code=2)
    assert f"--resume {out}: the run is being written by another zoo process" in refused.stderr
    release.touch()
    first.finish()
    assert "simplecnn:hidden" not in config.read_text()
    assert read_header(out / "model.safetensors").info.arch_params == {}
    assert not (out / ".zoo.lock").exists()


def test_a_full_disk_leaves_the_files_of_one_epoch(tmp_path: Path) -> None:
    # A real write failure (the kernel's per-process file size limit: EFBIG, as ENOSPC would
    # be) while epoch 2 is written: nothing of epoch 2 may be left beside epoch 1's files, and
    # the message says what is there.
    ref = tmp_path / "ref"
    Trainer(fast(ref, epochs=1)).fit()
    # Room for epoch 1's checkpoint, not for epoch 2's: its history holds one more record
    # (over 250 bytes; the timings in each vary in length by a few).
    limit = (ref / "checkpoints" / "last.safetensors").stat().st_size + 100

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "run"
    args = ["--image-size", "8", "--batch-size", "128", "--epochs", "2", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited,
    )
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error == (
        f"error: cannot write epoch 2 to {out}: File too large ({out}/checkpoints/"
        "last.safetensors); nothing of it was written, epoch 1 is complete there (resume with "
        f"`zoo train --resume {out}` once there is room)"
    )
    assert read_header(out / "model.safetensors").info.epoch == 1
    assert json.loads((out / "config.json").read_text())["zoo"]["epoch"] == 1
    for name in ("last", "best"):
        assert read_header(out / "checkpoints" / f"{name}.safetensors").state["epoch"] == 1
    assert len(records(out)) == 1 and partial_files(out) == []


class Shadow:
    """A plugin installed after a run: it registers the names of the run's built-ins."""

    @zoo.hookimpl
    def zoo_register_architectures(self, register):
        register("simplecnn", lambda num_classes, in_chans, image_size: None)

    @zoo.hookimpl
    def zoo_register_optimizers(self, register):
        register("adam", lambda params, lr: None)

    @zoo.hookimpl
    def zoo_register_datasets(self, register):
        register("digits", lambda image_size, seed, val_fraction: None)


class Acme:
    @zoo.hookimpl
    def zoo_register_architectures(self, register):
        from zoo.builtins.architectures import simplecnn

        register("tiny", simplecnn)


def as_an_older_zoo_wrote_it(run: Path, **bare: str) -> None:
    """Rewrite a run's checkpoint with the bare component names runs saved before they
    recorded qualified ones (through zoo's own writer, so its digests are valid)."""
    for path in (run / "checkpoints" / "last.safetensors", run / "model.safetensors"):
        header = read_header(path)
        header.info.config.update(bare)
        if header.state is not None:
            header.state["config"].update(bare)
        weights.save(path, load_file(str(path)), header.info, header.state)
    (run / "config.toml").unlink()


def test_a_plugin_shadowing_a_built_in_changes_no_existing_run(
    zoo_plugins, cli, tmp_path: Path
) -> None:
    new, old = tmp_path / "new", tmp_path / "old"
    Trainer(fast(new, epochs=1)).fit()
    saved = (new / "config.toml").read_text()
    assert 'arch = "zoo:simplecnn"' in saved and 'optimizer = "zoo:adam"' in saved
    assert 'data = "zoo:digits"' in saved
    shutil.copytree(new, old)
    as_an_older_zoo_wrote_it(old, arch="simplecnn", optimizer="adam", data="digits")
    zoo_plugins.register(Shadow(), "shadow")
    assert "several plugins" in cli("train", "--arch", "simplecnn", code=2).stderr
    # The run resumes with what it recorded; the name it was given, bare or qualified, is the
    # same component.
    assert resume_config(new, {"arch": "zoo:simplecnn"}).arch == "zoo:simplecnn"
    cli("train", "--resume", new, "--epochs", "2", "--arch", "simplecnn")
    assert len(records(new)) == 2
    differs = cli("train", "--resume", new, "--epochs", "3", "--arch", "shadow:simplecnn", code=2)
    assert "arch differs from the run's ('shadow:simplecnn' vs 'zoo:simplecnn')" in differs.stderr
    # A run saved with bare names means the built-ins it had: those are evaluated and resumed.
    report = json.loads(cli("eval", old, "--json", "--no-plots").stdout)
    assert (report["data"], report["count"]) == ("digits", 359)
    cli("train", "--resume", old, "--epochs", "2")
    assert read_header(old / "checkpoints" / "last.safetensors").state["config"]["arch"] == (
        "zoo:simplecnn"
    )


def test_an_old_bare_name_two_plugins_now_register_is_refused(
    zoo_plugins, cli, tmp_path: Path
) -> None:
    zoo_plugins.register(Acme(), "acme")
    run = tmp_path / "run"
    Trainer(fast(run, epochs=1, arch="tiny")).fit()
    as_an_older_zoo_wrote_it(run, arch="tiny")

    class Rival:
        @zoo.hookimpl
        def zoo_register_architectures(self, register):
            register("tiny", lambda num_classes, in_chans, image_size: None)

    zoo_plugins.register(Rival(), "rival")
    result = cli("train", "--resume", run, "--epochs", "2", code=2)
    assert result.stderr == (
        "error: architecture 'tiny' is provided by several plugins; use one of: acme:tiny, "
        "rival:tiny\n"
    )
