"""``zoo tune``: a real Optuna study on SQLite, with real worker processes, a pruned trial, a
worker killed with SIGKILL and retried, best.toml reproducing the best trial bit for bit, and
every bad input refused before a trial starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from moments import Child
from safetensors.torch import load_file

from zoo.tasks.search_space import parse_search
from zoo.train.config import TrainConfig

# Trials as small as training gets: 8x8 digits, one batch size, one thread per trial.
BASE = 'image_size = 8\nbatch_size = 128\nepochs = 2\nmonitor = "val_accuracy"\n'


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def load(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_two_workers_share_a_study_prune_and_best_toml_reproduces(cli, tmp_path: Path) -> None:
    # Two good learning rates first, then a hopeless one: --sampler grid queues the six
    # combinations in order, so every lr=10 trial starts after a good trial has completed and
    # the median pruner (from the first completed trial) stops it after its first epoch.
    config = write(
        tmp_path / "search.toml",
        BASE + "\n[search]\nlr = [3e-3, 10.0]\nseed = [0, 1, 2]\n",
    )
    out = tmp_path / "study"
    args = ["tune", "--config", config, "--jobs", "2", "--out", out, "--sampler", "grid"]
    args += ["--pruner", "median:n_startup_trials=1,n_warmup_steps=0"]
    result = cli(*args, "--json")
    report = json.loads(result.stdout)

    study = load(out, "search")
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 6  # none twice
    runs = [t.user_attrs["run_dir"] for t in trials]
    assert sorted(runs) == [str(out / f"trial-{n:04d}") for n in range(6)]
    states = {t.number: t.state for t in trials}
    hopeless = [t for t in trials if t.params["lr"] == 10.0]
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in hopeless), states
    for t in hopeless:  # the pruned run directory says so, after one epoch
        summary = json.loads(Path(t.user_attrs["run_dir"], "summary.json").read_text())
        assert summary["stopped"] == "pruned" and summary["epochs_completed"] == 1
    assert [t["number"] for t in report["trials"]] == list(range(6))
    assert {t["state"] for t in report["trials"]} <= {"complete", "pruned"}
    assert report["best"]["number"] == study.best_trial.number
    assert report["best"]["params"]["lr"] == 3e-3
    assert {Path(p).name for p in report["plots"]} == {
        "optimization_history.png",
        "param_importances.png",
    }
    assert all(Path(p).stat().st_size > 1000 for p in report["plots"])

    # best.toml is a zoo train config that gives the best trial's weights, bit for bit
    best = Path(report["best"]["config"])
    assert best == out / "best.toml"
    threads = torch.get_num_threads()
    try:
        cli("train", "--config", best, "--out", tmp_path / "again")
    finally:
        torch.set_num_threads(threads)  # best.toml names the trial's thread count
    trial_run = Path(report["best"]["run_dir"])
    assert same_weights(tmp_path / "again" / "model.safetensors", trial_run / "model.safetensors")
    # and the trial's run is an ordinary run: zoo eval reads it
    evaluated = json.loads(cli("eval", trial_run, "--json", "--no-plots").stdout)
    last = json.loads((trial_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert evaluated["accuracy"] == pytest.approx(last["val_accuracy"])

    # the same command again continues the study: it already has its six trials
    again = cli("tune", "--config", config, "--out", out, "--sampler", "grid")
    assert "6 trials" in again.stdout and "best settings:" in again.stdout
    assert len(load(out, "search").get_trials()) == 6


def test_a_killed_worker_s_trial_is_failed_retried_and_resumed(tmp_path: Path) -> None:
    config = write(
        tmp_path / "search.toml",
        BASE.replace("epochs = 2", "epochs = 12")
        + "threads = 1\n\n[search]\nlr = {low = 1e-3, high = 1e-2, log = true}\n",
    )
    out = tmp_path / "study"
    args = ["tune", "--config", str(config), "--out", str(out)]
    args += ["--trials", "1", "--heartbeat", "1", "--pruner", "none"]
    first = out / "trial-0000"
    # the worker dies mid-trial, its trial left running: right after epoch 3's metrics
    worker = Child(
        args, tmp_path / "log.txt", at="replace", paths=[f"{first}/metrics.jsonl"], count=3
    )
    worker.kill()
    assert not (first / "summary.json").exists()
    assert len((first / "metrics.jsonl").read_text().splitlines()) == 3

    command = [sys.executable, "-m", "zoo", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "retried as" in result.stdout

    trials = sorted(load(out, "search").get_trials(), key=lambda t: t.number)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [0]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
    assert retry[0].params == failed[0].params
    assert retry[0].user_attrs["run_dir"] == str(first)  # it continued the killed run
    # one trial asked for: the retry stands for the killed one, which is not counted twice
    assert len(trials) == 2
    assert {t.system_attrs.get("failed_trial", t.number) for t in trials} == {0}
    records = [json.loads(line) for line in (first / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 13))
    assert sorted(retry[0].intermediate_values) == list(range(1, 13))


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ("weight_decy = [0.1]", "unknown setting 'weight_decy'; did you mean weight_decay"),
        ("lr = {low = 0.1, high = 0.01}", "lr: the range is inverted"),
        ("lr = {low = 0.1, high = 0.1}", "lr: the range is empty"),
        ("lr = []", "lr: the list of choices is empty"),
        ("lr = {low = 0.0, high = 0.1, log = true}", "a log range needs low > 0"),
        ("lr = {lo = 0.1, high = 1.0}", "unknown range key 'lo'; did you mean low"),
        ("epochs = {low = 1.5, high = 4}", "epochs is an integer setting"),
        ("arch = {low = 1, high = 2}", "arch is not a number"),
        ('arch = ["simplecnn", "simplecnnn"]', "unknown architecture 'simplecnnn'"),
        ('aug = [["hflip"], ["hflip", "rotte"]]', "unknown augmentation 'rotte'"),
        ('"loss.label_smothing" = [0.1]', "unknown parameter 'label_smothing'"),
        ('arch = ["simplecnn", "resnet18"]\n"arch.hidden" = [64]', "unknown parameter 'hidden'"),
        ('"aug.rotate.degrees" = [10]', "no augmentation named 'rotate' in aug"),
        ('"epochs.step" = [1]', "epochs is not a component setting"),
        ('out = ["a"]', "out cannot be searched"),
        ("lr = [0.0]", "learning rate must be positive"),
    ],
)
def test_bad_search_tables_are_refused_before_any_trial(
    cli, tmp_path: Path, search: str, message: str
) -> None:
    config = write(tmp_path / "s.toml", BASE + "\n[search]\n" + search + "\n")
    result = cli("tune", "--config", config, "--out", tmp_path / "out", code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage", "sqlite:////nonexistent-dir/x/study.db"], "cannot open the storage"),
        (["--storage", "nosuchdb://host/db"], "cannot open the storage"),
        (["--pruner", "medain"], "--pruner medain: unknown; did you mean median"),
        (["--pruner", "median:n_startup=1"], "unknown parameter 'n_startup'"),
        (["--sampler", "grid"], "--sampler grid takes lists of choices; lr is a range"),
        (["--jobs", "0"], "--jobs must be at least 1"),
    ],
)
def test_bad_options_are_refused(cli, tmp_path: Path, args: list[str], message: str) -> None:
    config = write(tmp_path / "s.toml", BASE + "\n[search]\nlr = {low = 1e-3, high = 1e-1}\n")
    result = cli("tune", "--config", config, "--out", tmp_path / "out", *args, code=2)
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_study_continues_only_with_its_own_settings(cli, tmp_path: Path) -> None:
    from zoo.tasks.tune import prepare
    from zoo.tasks.tune_study import setup

    config = write(tmp_path / "s.toml", BASE + "\n[search]\nlr = [1e-3, 1e-2]\n")
    setup(prepare(config, out=tmp_path / "out"))
    write(config, BASE.replace("epochs = 2", "epochs = 3") + "\n[search]\nlr = [1e-3, 1e-2]\n")
    result = cli("tune", "--config", config, "--out", tmp_path / "out", code=2)
    assert "was started with other settings (epochs differ)" in result.stderr
    write(config, "out = 'x'\n" + BASE + "\n[search]\nlr = [1e-3]\n")
    result = cli("tune", "--config", config, code=2)
    assert "out cannot be set for zoo tune" in result.stderr
    result = cli("tune", "--config", write(tmp_path / "n.toml", BASE), code=2)
    assert "no [search] table" in result.stderr


def test_component_parameters_merge_into_the_chosen_specs() -> None:
    space = parse_search(
        {
            "arch": ["simplecnn", "simplecnn:dropout=0.3"],
            "arch.hidden": [64, 128],
            "loss.label_smoothing": {"low": 0.0, "high": 0.2},
            "aug": [["hflip", "rotate"], ["rotate:degrees=5"]],
            "aug.rotate.degrees": {"low": 10, "high": 20},
        },
        "s.toml",
    )
    base = TrainConfig()
    space.check(base)
    trial = optuna.trial.FixedTrial(
        {
            "arch": "simplecnn:dropout=0.3",
            "arch.hidden": 128,
            "loss.label_smoothing": 0.1,
            "aug": json.dumps(["hflip", "rotate"]),
            "aug.rotate.degrees": 12,
        }
    )
    cfg = space.apply(base, space.suggest(trial))
    assert cfg.arch == "simplecnn:dropout=0.3,hidden=128"
    assert cfg.loss == "cross_entropy:label_smoothing=0.1"
    assert cfg.aug == ["hflip", "rotate:degrees=12"]
    # unquoted dotted keys are TOML tables: the same parameters
    nested = parse_search({"loss": {"label_smoothing": {"low": 0.0, "high": 0.2}}}, "s.toml")
    assert [d.name for d in nested.dimensions] == ["loss.label_smoothing"]
    grid = parse_search({"lr": [0.1, 0.2], "aug": ["hflip", []]}, "s.toml").grid()
    assert grid == [
        {"lr": 0.1, "aug": '["hflip"]'},
        {"lr": 0.1, "aug": "[]"},
        {"lr": 0.2, "aug": '["hflip"]'},
        {"lr": 0.2, "aug": "[]"},
    ]
