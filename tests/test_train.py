"""End-to-end training runs: outputs, reloading, reproducibility, configuration, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_image_folder
from safetensors.torch import load_file

import zoo
from zoo.models.weights import read_header
from zoo.train.config import TrainConfig
from zoo.train.trainer import Trainer

FAST = ["--image-size", "8", "--batch-size", "128"]


def fast_config(out: Path, **changes: object) -> TrainConfig:
    return TrainConfig(out=str(out), image_size="8", batch_size=128, epochs=1).replace(**changes)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_train_writes_a_complete_run(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli("train", "--arch", "simplecnn:hidden=32", "--epochs", "2", "--out", out, *FAST)
    assert "epoch 2/2" in result.stdout and "weights:" in result.stdout
    for name in (
        "model.safetensors",
        "config.toml",
        "metrics.jsonl",
        "metrics.csv",
        "summary.json",
        "checkpoints/last.safetensors",
        "checkpoints/best.safetensors",
    ):
        assert (out / name).is_file(), name
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {
        "train_loss",
        "val_loss",
        "val_accuracy",
        "val_precision",
        "val_recall",
        "val_f1",
        "lr",
        "images_per_second",
    } <= set(lines[0])
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    tensors = weights(out / "model.safetensors")  # plain safetensors, readable by anyone
    assert "classifier.weight" in tensors and tensors["classifier.weight"].shape == (10, 32)
    info = read_header(out / "model.safetensors").info
    assert info is not None
    assert (info.arch, info.arch_params, info.num_classes, info.in_chans) == (
        "zoo:simplecnn",
        {"hidden": 32},
        10,
        1,
    )
    assert info.image_size == (8, 8) and info.classes == [str(d) for d in range(10)]
    assert len(info.mean) == 1 and 0 < info.mean[0] < 1 and info.zoo_version == zoo.__version__
    assert info.config["arch"] == "zoo:simplecnn:hidden=32" and info.epoch == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_completed"] == 2 and summary["memory"]["peak_rss_mb"] > 0


@pytest.mark.cpu_kernels
def test_load_gives_the_logits_of_the_end_of_training(tmp_path: Path) -> None:
    trainer = Trainer(fast_config(tmp_path / "run", epochs=2))
    trainer.fit()
    x = torch.randn(5, 1, 8, 8)
    trainer.net.eval()
    with torch.no_grad():
        expected = trainer.net(x)
    loaded = zoo.load(tmp_path / "run")
    assert loaded.classes == [str(d) for d in range(10)] and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    images = torch.randint(0, 256, (3, 1, 20, 20), dtype=torch.uint8)
    predictions = loaded.predict(images, top_k=3)
    assert len(predictions) == 3 and len(predictions[0]) == 3
    assert sum(p for _, p in predictions[0]) <= 1.0 + 1e-6
    # A training checkpoint loads too (its tensors are prefixed).
    best = zoo.load(tmp_path / "run" / "checkpoints" / "last.safetensors")
    with torch.no_grad():
        assert torch.equal(best(x), expected)


@pytest.mark.cpu_kernels
def test_same_seed_gives_bit_identical_weights(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b", "c"):
        seed = 1 if name == "c" else 0
        Trainer(
            fast_config(
                tmp_path / name,
                seed=seed,
                aug=["affine:degrees=10", "mixup"],
                loss="soft_target_cross_entropy",
            )
        ).fit()
        runs.append(weights(tmp_path / name / "model.safetensors"))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


@pytest.mark.cpu_kernels
def test_resume_continues_to_the_same_weights(cli, tmp_path: Path) -> None:
    # Extending --epochs on resume: a schedule whose curve does not depend on the total
    # (cosine would keep its original length; the SIGKILL test covers unchanged epochs).
    args = [
        "--optimizer",
        "sgd:momentum=0.9",
        "--scheduler",
        "step:step_epochs=1,gamma=0.5,warmup_epochs=0.5",
        "--aug",
        "hflip",
        "--ema",
        "--lr",
        "0.05",
        *FAST,
    ]
    cli("train", "--epochs", "3", "--out", tmp_path / "full", *args)
    cli("train", "--epochs", "2", "--out", tmp_path / "part", *args)
    resumed = cli("train", "--resume", tmp_path / "part", "--epochs", "3")
    assert "resumed at epoch 2" in resumed.stdout
    full = weights(tmp_path / "full" / "model.safetensors")
    part = weights(tmp_path / "part" / "model.safetensors")
    assert all(torch.equal(full[k], part[k]) for k in full)
    ema_full = weights(tmp_path / "full" / "model_ema.safetensors")
    ema_part = weights(tmp_path / "part" / "model_ema.safetensors")
    assert all(torch.equal(ema_full[k], ema_part[k]) for k in ema_full)
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_resume_refuses_non_runs_and_other_architectures(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    bad = cli("train", "--resume", tmp_path / "empty", code=2)
    assert "not a zoo run directory" in bad.stderr
    cli("train", "--out", tmp_path / "run", *FAST)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    other = cli("train", "--resume", tmp_path / "run", "--arch", "simplecnn:hidden=8", code=2)
    assert "arch differs from the run's" in other.stderr
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_config_file_and_command_line_precedence(cli, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        'arch = "simplecnn:hidden=16"\nepochs = 1\nbatch_size = 128\n'
        'image_size = 8\nlr = 0.01\naug = ["hflip", "brightness:amount=0.1"]\n'
    )
    cli("train", "--config", config, "--lr", "0.002", "--out", tmp_path / "run")
    saved = (tmp_path / "run" / "config.toml").read_text()
    # Components are recorded by the qualified names they resolved to.
    assert 'arch = "zoo:simplecnn:hidden=16"' in saved and "lr = 0.002" in saved
    assert 'aug = ["zoo:hflip", "zoo:brightness:amount=0.1"]' in saved
    # The written config is itself a valid --config file.
    cli("train", "--config", tmp_path / "run" / "config.toml", "--out", tmp_path / "again")
    a = weights(tmp_path / "run" / "model.safetensors")
    b = weights(tmp_path / "again" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    config.write_text("epoch = 3\n")
    bad = cli("train", "--config", config, code=2)
    assert "unknown setting 'epoch'; did you mean epochs" in bad.stderr


def test_previous_run_is_not_overwritten_without_asking(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cli("train", "--out", out, *FAST)
    before = (out / "model.safetensors").read_bytes()
    refused = cli("train", "--out", out, *FAST, code=2)
    assert "holds a previous run" in refused.stderr and "--overwrite" in refused.stderr
    assert (out / "model.safetensors").read_bytes() == before
    cli("train", "--out", out, "--overwrite", "--seed", "3", *FAST)
    assert (out / "model.safetensors").read_bytes() != before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "simplecn"], "unknown architecture 'simplecn'; did you mean simplecnn?"),
        (["--arch", "simplecnn:hiden=3"], "unknown parameter 'hiden'; did you mean hidden?"),
        (["--aug", "flip"], "unknown augmentation 'flip'; did you mean"),
        (["--loss", "cross_entropy:smoothing=0.1"], "accepted: label_smoothing"),
        (["--optimizer", "addam"], "unknown optimizer 'addam'; did you mean adam"),
        (["--data", "./no/such/folder"], "/no/such/folder does not exist"),
        (["--data", "folder:root=/no/such/folder,channels=1"], "/no/such/folder does not exist"),
        (["--data", "digitz"], "unknown dataset 'digitz'; did you mean digits?"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--image-size", "big"], "image size must be N or HxW"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--threads", "0"], "threads must be at least 1"),
        (["--precision", "fp8"], "precision must be"),
        (["--class-weights", "auto", "--loss", "soft_target_cross_entropy:weight=1"], "set by zoo"),
        (
            ["--arch", "simplecnn:hidden=abc"],
            "architecture 'zoo:simplecnn': parameter hidden must be int, got 'abc'",
        ),
        (["--aug", "rotate:degrees=abc"], "parameter degrees must be float, got 'abc'"),
        (["--aug", "rotate:degrees=inf"], "parameter degrees must be a finite number, got inf"),
        (["--lr", "inf"], "lr must be a finite number, got inf"),
        (["--lr", "nan"], "lr must be a finite number, got nan"),
        (["--weight-decay", "-inf"], "weight decay must be a finite number, got -inf"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli, tmp_path: Path, args: list[str], message: str
) -> None:
    result = cli("train", "--out", tmp_path / "run", *FAST, *args, code=2)
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_training_on_a_folder_with_a_corrupt_image(cli, tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    (root / "dog" / "bad.jpg").write_bytes(b"garbage")
    result = cli(
        "train", "--data", root, "--image-size", "16", "--epochs", "2", "--out", tmp_path / "run"
    )
    assert "bad.jpg" in result.stderr and "1 unreadable images skipped" in result.stdout
    info = read_header(tmp_path / "run" / "model.safetensors").info
    assert info is not None and info.classes == ["cat", "dog"] and info.in_chans == 3


def test_engine_options_run_together(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cli(
        "train",
        "--out",
        out,
        "--epochs",
        "3",
        "--accum-steps",
        "2",
        "--clip-grad",
        "1.0",
        "--weight-decay",
        "0.01",
        "--optimizer",
        "adamw",
        "--class-weights",
        "auto",
        "--balanced",
        "--scheduler",
        "plateau:patience=1",
        "--keep",
        "2",
        "--monitor",
        "val_loss",
        "--aug",
        "random_erasing",
        "--aug",
        "cutmix",
        "--loss",
        "focal",
        *FAST,
    )
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "best.safetensors",
        "epoch-0002.safetensors",
        "epoch-0003.safetensors",
        "last.safetensors",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["metric"] == "val_loss"


def test_early_stopping(tmp_path: Path) -> None:
    result = Trainer(
        fast_config(tmp_path / "run", epochs=20, lr=1e-9, patience=2, monitor="val_accuracy")
    ).fit()
    assert result.stopped == "early_stopping" and len(result.history) == 3
    assert result.summary["stopped_by"] == "zoo:early_stopping"


class NaNAfterOneEpoch:
    """A plugin whose loss turns NaN in the second epoch."""

    @zoo.hookimpl
    def zoo_register_losses(self, register):
        def unstable(steps: int = 11):
            calls = {"n": 0}

            def loss(logits, targets):
                calls["n"] += 1
                value = torch.nn.functional.cross_entropy(logits, targets)
                return value * float("nan") if calls["n"] > steps else value

            return loss

        register("unstable", unstable)


def test_nan_loss_stops_and_keeps_the_last_good_weights(zoo_plugins, cli, tmp_path: Path) -> None:
    zoo_plugins.register(NaNAfterOneEpoch(), "test")
    result = cli(
        "train", "--loss", "unstable", "--epochs", "3", "--out", tmp_path / "run", *FAST, code=1
    )
    assert "NaN or infinite in epoch 2" in result.stderr and "(epoch 1)" in result.stderr
    info = read_header(tmp_path / "run" / "model.safetensors").info
    assert info is not None and info.epoch == 1
    assert all(
        torch.isfinite(t).all() for t in weights(tmp_path / "run" / "model.safetensors").values()
    )


def test_a_run_that_saved_nothing_leaves_its_out_reusable(zoo_plugins, cli, tmp_path) -> None:
    # NaN from the first step: no epoch completes, only config.toml and run.json are there, which
    # is not a previous run: the same --out takes a new run without --overwrite.
    zoo_plugins.register(NaNAfterOneEpoch(), "test")
    out = tmp_path / "run"
    args = ["--epochs", "1", "--out", out, *FAST]
    result = cli("train", "--loss", "unstable:steps=0", *args, code=1)
    assert (
        f"no epoch completed, so nothing was saved (--out {out} can be used again)" in result.stderr
    )
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "run.json"]
    assert "failed" in json.loads((out / "run.json").read_text())  # zoo runs says so
    cli("train", *args)
    assert read_header(out / "model.safetensors").info.epoch == 1
    assert "unstable" not in (out / "config.toml").read_text()


def test_ctrl_c_keeps_the_last_completed_epoch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zoo",
            "train",
            "--epochs",
            "200",
            "--image-size",
            "16",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        # A shell that started the tests in the background (`pytest &`) leaves SIGINT ignored,
        # and a child would inherit that; Ctrl-C in a terminal is what is being tested here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 240
    while not (out / "checkpoints" / "last.safetensors").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted in epoch" in stderr and "zoo train --resume" in stderr
    assert "Traceback" not in stderr
    info = read_header(out / "model.safetensors").info
    assert info is not None and info.epoch >= 1
    zoo.load(out)  # the saved epoch is whole and loadable


def test_data_specs_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.train.config import data_spec

    assert data_spec("mnist:root=/data/mnist") == "mnist:root=/data/mnist"
    assert data_spec("folder:root=/x/y,channels=1") == "folder:root=/x/y,channels=1"
    assert data_spec("digitz") == "digitz"  # left for the registry to suggest "digits"
    root = write_image_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    monkeypatch.chdir(tmp_path)
    assert data_spec("pets") == str(root)  # which source reads it is decided later
    # A relative folder is recorded absolute: the run evaluates and resumes from anywhere.
    Trainer(TrainConfig(data="pets", image_size="8", epochs=1, out=str(tmp_path / "run"))).fit()
    saved = (tmp_path / "run" / "config.toml").read_text()
    assert f"root={root}" in saved
    monkeypatch.chdir(tmp_path / "run")
    from zoo.train.resume import resume_config

    assert resume_config(tmp_path / "run", {"data": "../pets"}).data.endswith(str(root))
    # So is a dataset's root parameter, and --init.
    assert data_spec("folder:root=../pets,channels=1") == f"folder:root={root},channels=1"
    assert data_spec("zoo:folder:root=../pets") == f"zoo:folder:root={root}"
    from zoo.train.config import normalize

    assert normalize(TrainConfig(init="../pets")).init == str(root)
    assert normalize(TrainConfig()).init is None


def test_init_keeps_the_normalization_the_weights_were_trained_with(tmp_path: Path) -> None:
    source = tmp_path / "source"
    Trainer(fast_config(source)).fit()
    source_info = read_header(source / "model.safetensors").info
    pets = write_image_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    run = tmp_path / "finetuned"
    Trainer(fast_config(run, data=f"folder:root={pets},channels=1", init=str(source))).fit()
    info = read_header(run / "model.safetensors").info
    assert info is not None and source_info is not None
    assert info.mean == source_info.mean and info.std == source_info.std
    fresh = tmp_path / "fresh"
    Trainer(fast_config(fresh, data=f"folder:root={pets},channels=1")).fit()
    assert read_header(fresh / "model.safetensors").info.mean != source_info.mean
