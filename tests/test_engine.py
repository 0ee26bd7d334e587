"""The training engine's options, one guarantee at a time: accumulation, weight decay groups,
clipping, EMA, the monitored metric (best checkpoint, early stopping, reduce-on-plateau), class
weights and balanced sampling, precision, compile, TensorBoard, the summary, no pickle."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_image_folder
from safetensors.torch import load_file, save_file
from torch import nn

import zoo
from zoo.data.batches import LoaderBatches, TensorBatches
from zoo.data.splits import DataSplits, ImageTensors
from zoo.labeling.task import SINGLE, task_named
from zoo.models.weights import read_header
from zoo.train.config import TrainConfig
from zoo.train.ema import EMA
from zoo.train.parts import param_groups
from zoo.train.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--image-size", "8", "--batch-size", "128"]


def fast_config(out: Path, **changes: object) -> TrainConfig:
    return TrainConfig(out=str(out), image_size="8", batch_size=128, epochs=1).replace(**changes)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# --- gradient accumulation -----------------------------------------------------------------


@pytest.mark.cpu_kernels
def test_accumulating_two_batches_equals_one_batch_twice_as_large(tmp_path: Path) -> None:
    # 1,438 training digits: 22 batches of 64 and 11 of 128 cover the same 1,408 images in the
    # same order. Without dropout or augmentations each update averages the same 128 losses;
    # only the summation order differs, so the weights agree to float32 rounding.
    common = dict(arch="simplecnn:dropout=0", optimizer="sgd:momentum=0.9", lr=0.05)
    Trainer(fast_config(tmp_path / "accum", batch_size=64, accum_steps=2, **common)).fit()
    Trainer(fast_config(tmp_path / "large", batch_size=128, **common)).fit()
    a = weights(tmp_path / "accum" / "model.safetensors")
    b = weights(tmp_path / "large" / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k
    # and they differ from a run that steps after every batch of 64
    Trainer(fast_config(tmp_path / "small", batch_size=64, **common)).fit()
    c = weights(tmp_path / "small" / "model.safetensors")
    assert not all(torch.allclose(a[k], c[k], rtol=1e-4, atol=1e-6) for k in a)


class SameSample:
    """A dataset of one image repeated: every batch has the same gradient."""

    @zoo.hookimpl
    def zoo_register_datasets(self, register):
        def same(image_size, seed, val_fraction, n: int = 64):
            g = torch.Generator().manual_seed(0)
            image = torch.randint(0, 256, (1, 1, 8, 8), generator=g, dtype=torch.uint8)
            images = image.expand(n, -1, -1, -1).contiguous()
            train = ImageTensors(images, torch.zeros(n, dtype=torch.long))
            return DataSplits(train, None, ["a", "b"], (8, 8), 1, mean=(0.5,), std=(0.25,))

        register("same", same)


@pytest.mark.cpu_kernels
def test_a_short_last_accumulation_group_is_averaged_over_its_own_batches(
    zoo_plugins, tmp_path: Path
) -> None:
    # Three batches with --accum-steps 2 make two updates: batches (1, 2), then batch 3 alone.
    # All batches are alike, so each update must equal one plain step on one batch.
    zoo_plugins.register(SameSample(), "test")
    common = dict(arch="simplecnn:dropout=0", optimizer="sgd:momentum=0", lr=0.1, batch_size=32)
    Trainer(fast_config(tmp_path / "accum", data="same:n=96", accum_steps=2, **common)).fit()
    Trainer(fast_config(tmp_path / "plain", data="same:n=64", **common)).fit()
    a = weights(tmp_path / "accum" / "model.safetensors")
    b = weights(tmp_path / "plain" / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7), k


# --- weight decay, clipping, EMA -----------------------------------------------------------


def test_weight_decay_skips_norms_and_biases() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, 2)
    )
    net[4].weight.requires_grad_(False)  # frozen parameters are left out entirely
    decay, no_decay = param_groups(net, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[0].weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(p) for p in (net[0].bias, net[1].weight, net[1].bias, net[3].weight, net[3].bias)
    } | {id(net[4].bias)}
    only_weights = param_groups(nn.Linear(2, 2, bias=False), 0.1)
    assert len(only_weights) == 1 and only_weights[0]["weight_decay"] == 0.1  # no empty group


def initial_weights(tmp_path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """Fresh simplecnn weights in a plain safetensors file, to start a run from (--init)."""
    net = zoo.create_model("simplecnn", num_classes=10, in_chans=1, image_size=8)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "init.safetensors"))
    return str(tmp_path / "init.safetensors"), state


def test_weight_decay_shrinks_weights_but_not_biases(tmp_path: Path) -> None:
    # SGD with a learning rate too small to learn anything: only the decay moves parameters,
    # multiplying each decayed weight by (1 - lr * wd) = 0.99 per step.
    init, before = initial_weights(tmp_path)
    trainer = Trainer(
        fast_config(
            tmp_path / "run", init=init, optimizer="sgd:momentum=0", lr=1e-30, weight_decay=1e28
        )
    )
    trainer.fit()
    after = trainer.net.state_dict()
    steps = len(trainer.train_batches)
    for k in before:
        if k.endswith(".weight"):
            assert torch.allclose(after[k], before[k] * 0.99**steps, rtol=1e-4), k
        else:
            assert torch.equal(after[k], before[k]), k


def test_clipping_bounds_every_update(tmp_path: Path) -> None:
    # Plain SGD with lr 1 moves the weights by the clipped gradient: at most clip per step.
    init, start = initial_weights(tmp_path)
    before = torch.cat([t.flatten() for t in start.values()])
    clip = 1e-3

    def moved(name: str, **changes: object) -> tuple[float, int]:
        sgd = dict(init=init, optimizer="sgd:momentum=0", lr=1.0)
        trainer = Trainer(fast_config(tmp_path / name, **sgd, **changes))
        trainer.fit()
        after = torch.cat([t.flatten() for t in trainer.net.state_dict().values()])
        return (after - before).norm().item(), len(trainer.train_batches)

    clipped, steps = moved("clipped", clip_grad=clip)
    assert 0 < clipped <= steps * clip * (1 + 1e-4)
    free, _ = moved("free")
    assert free > 10 * steps * clip  # unclipped, the weights move much further


def test_ema_update_is_a_moving_average_of_weights_and_a_copy_of_buffers() -> None:
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.75, warmup=False)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(8, 3))  # moves the BatchNorm statistics
    ema.update(net)
    state = ema.state_dict()
    for name, p in net.named_parameters():
        assert torch.allclose(state[name], 0.75 * start[name] + 0.25 * p.detach()), name
    for name, b in net.named_buffers():
        assert torch.equal(state[name], b), name
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_warmup_follows_the_weights_early_then_settles_to_the_decay() -> None:
    ema = EMA(nn.Linear(2, 2), decay=0.999)
    decays = []
    for _ in range(10_000):  # (1 + n) / (10 + n) reaches 0.999 at n = 8,991
        decays.append(ema.current_decay())
        ema.updates += 1
    assert decays[0] == pytest.approx(0.1) and decays[10] == pytest.approx(11 / 20)
    assert decays == sorted(decays) and decays[-1] == 0.999
    assert EMA(nn.Linear(2, 2), decay=0.9, warmup=False).current_decay() == 0.9


def test_ema_weights_are_evaluated_and_saved(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = Trainer(fast_config(out, epochs=2, ema=True, ema_decay=0.9)).fit()
    record = result.history[-1]
    for metric in ("loss", "accuracy", "precision", "recall", "f1"):
        assert f"ema_val_{metric}" in record and f"val_{metric}" in record
    assert record["ema_val_loss"] != record["val_loss"]
    ema, raw = weights(out / "model_ema.safetensors"), weights(out / "model.safetensors")
    assert ema.keys() == raw.keys()
    assert not all(torch.equal(ema[k], raw[k]) for k in ema)
    info = read_header(out / "model_ema.safetensors").info
    assert info is not None and info.epoch == 2
    loaded = zoo.load(out / "model_ema.safetensors")  # a complete model of its own
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), loaded.net(x))
    # the EMA weights evaluate to the recorded ema_val_accuracy
    state = load_file(str(out / "checkpoints" / "last.safetensors"))
    assert all(torch.equal(state[f"ema.{k}"], v) for k, v in ema.items())


# --- the monitored metric ------------------------------------------------------------------


@pytest.mark.parametrize(("monitor", "pick"), [("val_loss", min), ("val_accuracy", max)])
def test_best_checkpoint_follows_the_monitored_metric(tmp_path: Path, monitor, pick) -> None:
    out = tmp_path / "run"
    result = Trainer(fast_config(out, epochs=3, lr=3e-3, monitor=monitor)).fit()
    values = [r[monitor] for r in result.history]
    best_epoch = values.index(pick(values)) + 1  # the first epoch reaching the best value
    assert result.summary["best"] == {
        "metric": monitor,
        "value": pick(values),
        "epoch": best_epoch,
    }
    best = read_header(out / "checkpoints" / "best.safetensors")
    assert best.state is not None and best.state["epoch"] == best_epoch


def test_early_stopping_on_a_minimized_metric(tmp_path: Path) -> None:
    # lr 1e-30 leaves every weight unchanged, so val_loss never improves after epoch 1.
    result = Trainer(
        fast_config(tmp_path / "run", epochs=20, lr=1e-30, patience=2, monitor="val_loss")
    ).fit()
    assert result.stopped == "early_stopping" and len(result.history) == 3
    assert result.summary["stopped"] == "early_stopping"
    assert result.summary["best"]["epoch"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--monitor", "val_acc"], "--monitor val_acc: not a metric of this run; did you mean"),
        (["--monitor", "ema_val_accuracy"], "not a metric of this run"),
        (["--monitor", "seconds"], "not a metric of this run"),
    ],
)
def test_unknown_monitor_is_refused(cli, tmp_path: Path, args: list[str], message: str) -> None:
    result = cli("train", "--out", tmp_path / "run", *FAST, *args, code=2)
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_reduce_on_plateau_steps_with_the_monitored_metric(tmp_path: Path) -> None:
    # Gradients clipped to nothing leave the weights, so val_loss, unchanged: the rate halves
    # after every epoch past the first.
    flat = Trainer(
        fast_config(
            tmp_path / "flat",
            epochs=4,
            lr=0.01,
            optimizer="sgd:momentum=0",
            clip_grad=1e-30,
            monitor="val_loss",
            scheduler="plateau:patience=0,factor=0.5",
        )
    ).fit()
    assert len({r["val_loss"] for r in flat.history}) == 1  # the premise
    assert [r["lr"] for r in flat.history] == pytest.approx([0.01, 0.01, 0.005, 0.0025])
    # val_loss falling every epoch is an improvement in its (min) mode: the rate stays.
    falling = Trainer(
        fast_config(
            tmp_path / "falling",
            epochs=3,
            lr=3e-3,
            monitor="val_loss",
            scheduler="plateau:patience=0,factor=0.5",
        )
    ).fit()
    losses = [r["val_loss"] for r in falling.history]
    assert losses == sorted(losses, reverse=True)  # the premise: it improved every epoch
    assert [r["lr"] for r in falling.history] == [3e-3] * 3


# --- imbalanced data -----------------------------------------------------------------------


def test_class_weights_auto_are_inverse_class_frequencies(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imbalanced", {"common": 30, "rare": 10})
    trainer = Trainer(
        fast_config(tmp_path / "run", data=str(root), image_size="8", class_weights="auto")
    )
    trainer.fit()
    # the stratified 80% training split holds 24 and 8 images: 32 / (2 x count)
    assert torch.allclose(trainer.loss_fn.weight, torch.tensor([32 / 48, 32 / 16]))
    class_weights = task_named(SINGLE).class_weights
    missing = class_weights(torch.tensor([0, 1, 2, 0]), 4)  # class 3 has no images
    assert torch.allclose(missing, torch.tensor([0.5, 1.0, 1.0, 1.0]))
    balanced = class_weights(torch.tensor([0, 1, 1, 0]), 2)
    assert torch.equal(balanced, torch.ones(2))


def test_balanced_sampling_draws_classes_evenly() -> None:
    labels = torch.tensor([0] * 900 + [1] * 100)
    data = ImageTensors(torch.zeros(1000, 1, 2, 2, dtype=torch.uint8), labels)
    batches = TensorBatches(
        data, 100, torch.device("cpu"), shuffle=True, drop_last=True, balanced=True, seed=3
    )
    counts = torch.zeros(2)
    draws = []
    for epoch in range(5):
        seen = torch.cat([y for _, y in batches.epoch(epoch)])
        counts += torch.bincount(seen, minlength=2)
        draws.append(seen)
    share = counts[1] / counts.sum()
    assert 0.45 < share < 0.55  # 50% expected; 5,000 draws put 3 sigma at 2%
    assert not torch.equal(draws[0], draws[1])  # a new draw every epoch
    again = torch.cat([y for _, y in batches.epoch(0)])
    assert torch.equal(again, draws[0])  # from (seed, epoch) alone


class _Streamed(torch.utils.data.Dataset):
    """A streamed split whose items carry their own index as pixels."""

    def __init__(self, n: int) -> None:
        self.labels = [i % 3 for i in range(n)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return torch.full((1, 1, 1), i % 256, dtype=torch.uint8), self.labels[i]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("streamed", [False, True])
def test_ranks_take_disjoint_shares_of_each_global_batch(train: bool, streamed: bool) -> None:
    n, batch = 203, 20
    cpu = torch.device("cpu")

    def source(rank: int, world: int):
        kwargs = dict(shuffle=train, drop_last=train, seed=5, rank=rank, world=world)
        if streamed:
            return LoaderBatches(_Streamed(n), batch, cpu, workers=0, **kwargs)
        ids = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
        return TensorBatches(ImageTensors(ids, torch.arange(n) % 3), batch, cpu, **kwargs)

    def batches(rank: int, world: int) -> list[list[int]]:
        return [x.flatten().tolist() for x, _ in source(rank, world).epoch(2)]

    whole = batches(0, 1)
    shares = [batches(rank, 2) for rank in range(2)]
    assert len(shares[0]) == len(whole) == len(source(0, 2))
    for step, items in enumerate(whole):
        assert len(shares[0][step]) == (len(items) + 1) // 2
        assert sorted(shares[0][step] + shares[1][step]) == sorted(items)
    seen = sorted(i for items in whole for i in items)
    if train:  # 10 full batches of 20; the last 3 images wait for another epoch
        assert len(seen) == 200 and len(set(seen)) == 200
    else:  # validation: every image exactly once, in order
        assert seen == [i % 256 for i in range(n)]


# --- precision, compile, logs ----------------------------------------------------------------


def test_bf16_autocast_on_the_cpu_by_flag(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli("train", "--precision", "bf16", "--device", "cpu", "--out", out, *FAST)
    assert "precision bfloat16" in result.stdout
    tensors = weights(out / "model.safetensors")
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in tensors.values())
    assert history(out)[0]["val_accuracy"] > 0.2


def test_fp16_on_the_cpu_is_refused(cli, tmp_path: Path) -> None:
    result = cli("train", "--precision", "fp16", "--device", "cpu", "--out", tmp_path / "r", code=2)
    assert result.stderr == "error: --precision fp16 needs a GPU; use bf16 on the CPU\n"
    assert not (tmp_path / "r").exists()


def test_compile_on_the_cpu_trains_the_same_weights(tmp_path: Path) -> None:
    # torch.compile with inductor builds C++ kernels with gcc: a tiny network keeps it short.
    # No dropout: inductor draws its own random numbers. The fused kernels round differently,
    # so the weights agree within float32 rounding (observed: 3e-8 after one epoch).
    arch = "simplecnn:widths=[8],hidden=16,dropout=0"
    compiled, plain = tmp_path / "compiled", tmp_path / "plain"
    Trainer(fast_config(compiled, arch=arch, compile=True)).fit()
    Trainer(fast_config(plain, arch=arch)).fit()
    tensors, expected = (
        weights(compiled / "model.safetensors"),
        weights(plain / "model.safetensors"),
    )
    assert tensors.keys() == expected.keys()  # plain names (no _orig_mod.), loadable anywhere
    for k, v in expected.items():
        assert torch.allclose(tensors[k], v, rtol=0, atol=1e-5), (k, (tensors[k] - v).abs().max())
    zoo.load(compiled)


def test_tensorboard_writes_the_epoch_metrics(cli, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cli("train", "--tensorboard", "--epochs", "2", "--out", out, *FAST)
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(tags)
    recorded = history(out)
    assert [e.step for e in acc.Scalars("val_accuracy")] == [1, 2]
    assert acc.Scalars("val_accuracy")[1].value == pytest.approx(recorded[1]["val_accuracy"])


def test_summary_has_the_best_epoch_wall_time_throughput_and_peak_memory(
    cli, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = cli("train", "--epochs", "3", "--monitor", "val_loss", "--out", out, *FAST)
    summary = json.loads((out / "summary.json").read_text())
    records = history(out)
    losses = [r["val_loss"] for r in records]
    assert summary["epochs_completed"] == 3 and summary["stopped"] is None
    assert summary["best"] == {
        "metric": "val_loss",
        "value": min(losses),
        "epoch": losses.index(min(losses)) + 1,
    }
    assert summary["wall_seconds"] >= summary["train_seconds"] > 0
    assert summary["images_per_second"] > 0 and summary["memory"]["peak_rss_mb"] > 0
    assert summary["world_size"] == 1 and summary["weights"] == str(out / "model.safetensors")
    assert f"best val_loss {min(losses):.4f} (epoch {summary['best']['epoch']})" in result.stdout
    assert "peak memory" in result.stdout and "img/s" in result.stdout


def test_images_per_second_counts_the_images_a_short_epoch_saw(tmp_path: Path) -> None:
    # 24 training images and batches of 128: one step that sees 24 images, not 128.
    folder = write_image_folder(tmp_path / "few", {"a": 15, "b": 15})
    run = Trainer(fast_config(tmp_path / "run", data=str(folder))).fit()
    record = run.history[0]
    assert record["images_per_second"] * record["seconds"] == pytest.approx(24, rel=0.02)


def test_a_missing_tensorboard_fails_before_the_run_directory_changes(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    cli("train", "--epochs", "1", "--out", out, *FAST)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    result = cli("train", "--tensorboard", "--overwrite", "--out", out, *FAST, code=2)
    assert "--tensorboard needs the tensorboard package" in result.stderr
    assert result.stderr.count("\n") == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_an_unwritable_run_directory_is_a_one_line_error(cli, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = cli("train", "--out", tmp_path / "file" / "run", *FAST, code=2)
    assert "cannot write the run directory" in result.stderr and "Not a directory" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_failed_epoch_write_is_a_one_line_error_that_keeps_the_last_epoch(
    cli, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cli("train", "--epochs", "1", "--out", out, *FAST)
    last = out / "checkpoints" / "last.safetensors"
    kept = last.read_bytes()
    # epoch 2's weights cannot replace model.safetensors: a directory is in the way
    (out / "model.safetensors").unlink()
    (out / "model.safetensors").mkdir()
    (out / "model.safetensors" / "in-the-way").write_text("")
    result = cli("train", "--resume", out, "--epochs", "2", code=1)
    assert "cannot write epoch 2 to" in result.stderr and "epoch 1 is complete" in result.stderr
    assert result.stderr.count("\n") == 1
    assert last.read_bytes() == kept and not list(out.rglob(".*.tmp"))


# --- no pickle -------------------------------------------------------------------------------


PICKLING_CALLS = {
    ("torch", "load"),
    ("torch", "save"),
    ("distributed", "broadcast_object_list"),
    ("distributed", "all_gather_object"),
    ("distributed", "gather_object"),
    ("distributed", "scatter_object_list"),
    ("dist", "broadcast_object_list"),
    ("dist", "all_gather_object"),
}
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


def _pickle_uses(path: Path) -> list[str]:
    """Imports of pickling modules, calls of pickling functions, and opt-outs of safe loading."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "") in PICKLING_MODULES:
            found.append(f"{where} from {node.module} import")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            if (owner, node.attr) in PICKLING_CALLS:
                found.append(f"{where} {owner}.{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg in ("weights_only", "allow_pickle"):
            safe = node.arg == "weights_only"  # weights_only=True, allow_pickle=False
            if not (isinstance(node.value, ast.Constant) and node.value.value is safe):
                found.append(f"{where} {node.arg}={ast.unparse(node.value)}")
    return found


def test_nothing_in_zoo_uses_pickle(tmp_path: Path) -> None:
    files = sorted((ROOT / "zoo").rglob("*.py")) + sorted((ROOT / "plugins").rglob("*.py"))
    assert len(files) > 20
    uses = [use for f in files for use in _pickle_uses(f)]
    assert uses == [], "\n".join(uses)
    # the scan sees what it looks for
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import pickle\nimport torch\nfrom torch import distributed\n"
        "torch.load('x', weights_only=False)\ndistributed.broadcast_object_list([])\n"
        "torch.load('y', weights_only=True)\n"
    )
    assert len(_pickle_uses(probe)) == 5  # import, 2 x torch.load, weights_only=False, broadcast


class _HalfUnreadable(torch.utils.data.Dataset):
    """Four items; the last two cannot be read (None), as a broken file would be."""

    labels = (0, 1, 0, 1)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return None if i >= 2 else (torch.full((1, 8, 8), 60 * i, dtype=torch.uint8), i % 2)


class _HalfUnreadablePlugin:
    @zoo.hookimpl
    def zoo_register_datasets(self, register):
        def half_unreadable(image_size, seed, val_fraction):
            return DataSplits(_HalfUnreadable(), None, ["a", "b"], (8, 8), 1, (0.5,), (0.5,))

        register("half_unreadable", half_unreadable)


def test_an_accumulation_group_cut_short_by_dropped_batches_still_steps(
    zoo_plugins, tmp_path: Path
) -> None:
    from zoo.data.batches import epoch_generator
    from zoo.models.weights import load_tensors
    from zoo.train.state import unflatten_state

    zoo_plugins.register(_HalfUnreadablePlugin(), "test")
    # A seed whose first epoch puts both unreadable items in the second (last) batch, the one
    # that would have applied the accumulated gradient.
    seed = next(
        s
        for s in range(100)
        if set(torch.randperm(4, generator=epoch_generator(s, 0))[2:].tolist()) == {2, 3}
    )
    out = tmp_path / "run"
    Trainer(
        TrainConfig(
            data="half_unreadable",
            batch_size=2,
            accum_steps=2,
            epochs=1,
            seed=seed,
            workers=0,
            optimizer="sgd",
            lr=0.1,
            out=str(out),
        )
    ).fit()
    last = out / "checkpoints" / "last.safetensors"
    state = read_header(last).state
    scheduler = unflatten_state(state["scheduler"], load_tensors(last))
    assert scheduler["last_epoch"] == 1  # one optimizer step, from the one readable batch
