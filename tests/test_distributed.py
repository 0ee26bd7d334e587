"""Distributed data-parallel training with gloo on the CPU: two processes match one.

The two-process run must equal the one-process run with the same global batch up to float32
rounding. Each process averages the loss over its half of a batch and DDP averages the two
halves' gradients, where one process averages all of it at once: the same value, summed in
another order. With plain SGD (which does not amplify tiny differences the way Adam's
normalisation of near-zero gradients does), no dropout and no augmentation (whose random draws
are per process), after two epochs the weights agree within 1e-5 (observed: about 2e-7), the
losses within a relative 1e-5 (observed: 5e-7), and the accuracies within one image.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zoo.train.config import TrainConfig
from zoo.train.trainer import Trainer

DDP = [
    "--arch",
    "simplecnn:dropout=0",
    "--optimizer",
    "sgd:momentum=0.9",
    "--lr",
    "0.05",
    "--image-size",
    "8",
    "--batch-size",
    "64",
    "--epochs",
    "2",
    "--device",
    "cpu",
]
# Enough epochs that the run is still going when a test stops one of its processes.
FAST_DDP = ["--image-size", "8", "--batch-size", "128", "--epochs", "100", "--device", "cpu"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard, not a timing assertion
    )


def history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    one = Trainer(
        TrainConfig(
            arch="simplecnn:dropout=0",
            optimizer="sgd:momentum=0.9",
            lr=0.05,
            image_size="8",
            batch_size=64,
            epochs=2,
            device="cpu",
            out=str(tmp_path / "one"),
        )
    ).fit()
    out = tmp_path / "two"
    command = [sys.executable, "-m", "zoo", "train", *DDP, "--nproc", "2", "--out", str(out)]
    result = run(command, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # torchrun leaves its log files open: no warning about them ends the run
    assert "warning" not in result.stdout + result.stderr

    # rank 0 alone reports and writes: one header, one line per epoch, one set of files
    assert result.stdout.count("device cpu x2") == 1
    assert result.stdout.count("epoch 1/2") == 1 and result.stdout.count("weights:") == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "best.safetensors",
        "last.safetensors",
    ]
    assert not list(out.rglob("*.tmp"))
    records = history(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2

    # the metrics, all-reduced over the two halves of the validation set, match
    n_val = 359
    for mine, theirs in zip(records, one.history, strict=True):
        for key in ("train_loss", "val_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5), key
        for key in ("train_accuracy", "val_accuracy"):
            assert abs(mine[key] - theirs[key]) <= 1 / n_val + 1e-12, key
    a = load_file(str(out / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model.safetensors"))
    for k in b:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-5), (k, (a[k] - b[k]).abs().max())


THREADS_AFTER_FIT = """
import os
import sys
from pathlib import Path

from zoo.train import TrainConfig, Trainer

out = Path(sys.argv[1])
trainer = Trainer(TrainConfig(image_size="8", batch_size=64, epochs=1, device="cpu", out=str(out)))
trainer.fit()  # the trainer stays alive: fit alone must end the group
names = {open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")}
(out.parent / f"threads-{os.environ['RANK']}.txt").write_text(" ".join(sorted(names)))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through /proc")
def test_fit_ends_the_process_group_and_its_threads(tmp_path: Path) -> None:
    # gloo's worker threads must be joined when fit returns: left running, one may need the GIL
    # while the interpreter shuts down, and std::terminate aborts the process (exit 134).
    # A warm registry cache, as users have it: a cold one imports timm, which hid the leak.
    from zoo.plugins.build import build_registry

    build_registry()
    (tmp_path / "fit.py").write_text(THREADS_AFTER_FIT)
    result = run([*TORCHRUN, "fit.py", str(tmp_path / "run")], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for rank in (0, 1):
        threads = (tmp_path / f"threads-{rank}.txt").read_text()
        assert "gloo" not in threads, (rank, threads)


FAILS_ON_RANK_1 = """
import os

import zoo


@zoo.hookimpl
def zoo_register_datasets(register):
    def flaky(image_size, seed, val_fraction):
        if os.environ["RANK"] == "1":
            raise OSError("no such file: /data/shard-1")
        from zoo.builtins.loaders import load_digits

        return load_digits(image_size or (8, 8), seed, val_fraction)

    register("flaky", flaky)
"""


def test_torchrun_ranks_share_one_run_directory_and_stop_together(tmp_path: Path) -> None:
    # Launched by torchrun without --out: every rank must name rank 0's timestamped directory.
    quick = ["-m", "zoo", "train", "--image-size", "8", "--batch-size", "128", "--epochs", "1"]
    result = run([*TORCHRUN, *quick, "--device", "cpu"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "checkpoints" / "last.safetensors").is_file()
    assert len(history(run_dir)) == 1

    # A failure on rank 1 alone while rank 0 waits: both stop, rank 0 reports it once.
    (tmp_path / "flaky_plugin.py").write_text(FAILS_ON_RANK_1)
    plugin = {"ZOO_PLUGINS": str(tmp_path / "flaky_plugin.py")}
    out = tmp_path / "failed"
    failed = run([*TORCHRUN, *quick, "--data", "flaky", "--out", str(out)], tmp_path, **plugin)
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: process 1: dataset 'flaky_plugin:flaky' failed to build: "
        "OSError: no such file: /data/shard-1"
    ], failed.stderr
    assert not out.exists()


def test_launcher_refuses_bad_input_before_starting_processes(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    for args, message in [
        (["--sync-bn"], "--sync-bn needs CUDA GPUs"),
        (["--batch-size", "63"], "batch size 63 does not split evenly over 2 processes"),
        (["--arch", "simplecn"], "unknown architecture 'simplecn'"),
    ]:
        result = cli("train", "--nproc", "2", "--device", "cpu", "--out", out, *args, code=2)
        assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1
        assert not out.exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not: start distributed runs with"),
        ({"WORLD_SIZE": "2", "RANK": "two"}, "RANK='two' is not an integer"),
        (
            {"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"},
            "process 2: inconsistent torchrun environment: RANK=2, LOCAL_RANK=0, WORLD_SIZE=2",
        ),
    ],
)
def test_a_broken_torchrun_environment_is_refused(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name in ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("train", "--device", "cpu", "--out", tmp_path / "run", code=2)
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:  # ended meanwhile
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int | None:
    try:
        environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [int(v.partition(b"=")[2]) for v in environ if v.startswith(b"RANK=")]
    return ranks[0] if ranks else None


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the ranks through /proc")
def test_a_rank_killed_by_a_signal_is_named_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "zoo", "train", *FAST_DDP, "--nproc", "2", "--out", str(out)]
    launcher = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # Once an epoch is saved (its metrics file is the event), kill -9 rank 1 mid-run.
        while not (out / "metrics.jsonl").exists() and launcher.poll() is None:
            time.sleep(0.05)
        ranks = {_rank_of(pid): pid for pid in _children(launcher.pid)}
        os.kill(ranks[1], signal.SIGKILL)
        stdout, stderr = launcher.communicate(timeout=600)  # a hang guard
    finally:
        launcher.kill()
    assert launcher.returncode == 1, stdout + stderr
    resume = re.escape(f"(continue with `zoo train --resume {out}`)")
    assert re.fullmatch(
        rf"error: process 1 of 2 \(pid {ranks[1]}\) was killed by SIGKILL, so the run stopped; "
        rf"epoch \d+ is the last saved {resume}\n",
        stderr,
    ), stderr
    assert "interrupted" not in stdout + stderr and "Traceback" not in stdout + stderr


def test_two_processes_train_and_resume_over_shards(cli, tmp_path: Path) -> None:
    """``--nproc 2`` over WebDataset shards: each process streams its own shards, the run
    completes its epochs, and ``--resume`` continues it over the same shards."""
    from conftest import write_image_folder

    pets = write_image_folder(tmp_path / "pets", {"cat": 12, "dog": 12}, size=(12, 12))
    shards = tmp_path / "shards"
    cli("shard", pets, shards, "--image-size", "8", "--shard-size", "2KB")
    assert len(list(shards.glob("train-*.tar"))) >= 2
    out = tmp_path / "run"
    args = ["--image-size", "8", "--batch-size", "8", "--device", "cpu", "--workers", "1"]
    data = ["--data", f"wds:{shards}"]
    first = run(
        [
            sys.executable,
            "-m",
            "zoo",
            "train",
            *data,
            *args,
            "--epochs",
            "1",
            "--nproc",
            "2",
            "--out",
            str(out),
        ],
        tmp_path,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert [r["epoch"] for r in history(out)] == [1]
    resumed = run(
        [
            sys.executable,
            "-m",
            "zoo",
            "train",
            "--resume",
            str(out),
            "--epochs",
            "2",
            "--nproc",
            "2",
        ],
        tmp_path,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [r["epoch"] for r in history(out)] == [1, 2]
    assert "Traceback" not in first.stderr + resumed.stderr
