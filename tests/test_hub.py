"""Pretrained weights from the Hugging Face Hub, without the network: cache entries laid out on
disk as huggingface_hub writes them (``HF_HUB_OFFLINE=1``), and a local HTTP server standing in
for the Hub (``HF_ENDPOINT``) so that the real download path and its errors run too.

The weights are timm's own models with random weights, saved as timm saves them for the Hub;
the tiny ``test_resnet`` (160x160, 0.5M parameters) wherever the model does not matter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from hubtools import FakeHub, cache_entry, hub_environment, timm_files
from safetensors.torch import load_file

import zoo

TINY = "test_resnet.r160_in1k"
TINY_REPO = f"timm/{TINY}"
SMALL = ["--image-size", "16", "--batch-size", "8"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("hub-data") / "images"
    return write_image_folder(root, {"cats": 8, "dogs": 8, "owls": 8})


@pytest.fixture(scope="module")
def tiny_files() -> dict[str, bytes]:
    return timm_files(TINY)


@pytest.fixture
def offline_cache(tmp_path: Path, tiny_files: dict[str, bytes]) -> Path:
    """A Hugging Face cache holding timm/test_resnet.r160_in1k, used offline."""
    cache = tmp_path / "hf-cache"
    cache_entry(cache, TINY_REPO, tiny_files)
    with hub_environment(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_ENDPOINT=None):
        yield cache


@pytest.mark.cpu_kernels
def test_create_model_pretrained_equals_timms_from_the_same_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    cache_entry(cache, "timm/resnet18.a1_in1k", timm_files("resnet18.a1_in1k"))
    with hub_environment(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_ENDPOINT=None):
        ours = zoo.create_model("resnet18.a1_in1k", pretrained=True, num_classes=1000).state_dict()
        theirs = timm.create_model("resnet18.a1_in1k", pretrained=True).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
        # A bare name takes timm's default tag; new classes and channels adapt the weights.
        net = zoo.create_model("resnet18", pretrained=True, num_classes=3, in_chans=1)
        assert net.fc.out_features == 3 and net.conv1.weight.shape[1] == 1
        assert torch.equal(net.layer1[0].conv1.weight, theirs["layer1.0.conv1.weight"])


def test_offline_training_starts_from_the_cache_and_freezes_the_backbone(
    folder: Path, tmp_path: Path, tiny_files: dict[str, bytes]
) -> None:
    """The command a user types, in a real process: HF_HUB_OFFLINE=1 zoo train --pretrained."""
    cache = tmp_path / "hf-cache"
    cache_entry(cache, TINY_REPO, tiny_files)
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("HF_ENDPOINT", None)
    command = [
        sys.executable, "-m", "zoo", "train", "--data", str(folder), "--arch", TINY,
        "--pretrained", "--epochs", "2", "--freeze-epochs", "1", "--keep", "2",
        "--out", str(out), *SMALL,
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert f"tensors from hf-hub:{TINY_REPO} (classifier re-created for 3 classes" in said
    assert "inputs normalized as the weights were trained (mean [0.500, 0.500, 0.500]" in said
    weights = {k: v for k, v in _snapshot_tensors(cache).items() if not k.startswith("fc.")}
    first = _epoch(out, 1)
    second = _epoch(out, 2)
    # Epoch 1 trained the classifier alone: every backbone tensor, BatchNorm statistics
    # included, is still the pretrained one; epoch 2 trained everything.
    assert all(torch.equal(first[k], v) for k, v in weights.items())
    assert not torch.equal(first["fc.weight"], second["fc.weight"])
    changed = [k for k, v in weights.items() if not torch.equal(second[k], v)]
    assert "conv1.0.weight" in changed and "bn1.running_mean" in changed
    config = (out / "config.toml").read_text()
    assert "pretrained = true" in config and "freeze_epochs = 1" in config


def _snapshot_tensors(cache: Path) -> dict[str, torch.Tensor]:
    (snapshot,) = (cache / f"models--timm--{TINY}" / "snapshots").iterdir()
    return load_file(str(snapshot / "model.safetensors"))


def _epoch(out: Path, epoch: int) -> dict[str, torch.Tensor]:
    tensors = load_file(str(out / f"checkpoints/epoch-{epoch:04d}.safetensors"))
    return {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}


def test_a_missing_cache_entry_offline_is_one_line_and_writes_nothing(
    cli, folder: Path, offline_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = cli(
        "train", "--data", folder, "--arch", "test_vit.r160_in1k", "--pretrained",
        "--out", out, "--epochs", "1", *SMALL, code=2,
    )  # fmt: skip
    error = result.stderr.strip()
    assert "\n" not in error and "Traceback" not in result.output
    assert error.startswith("error: --pretrained: hf-hub:timm/test_vit.r160_in1k is not in ")
    assert "HF_HUB_OFFLINE is set" in error
    assert "`hf download timm/test_vit.r160_in1k model.safetensors config.json`" in error
    assert not out.exists()
    # An architecture without pretrained weights, and a tag that does not exist.
    result = cli("train", "--arch", "simplecnn", "--pretrained", "--out", out, code=2)
    assert "error: --pretrained: architecture 'zoo:simplecnn' has no pretrained weights" in (
        result.stderr
    )
    result = cli("train", "--arch", "test_resnet.r161", "--pretrained", "--out", out, code=2)
    assert "has no pretrained tag 'r161'; did you mean r160_in1k?" in result.stderr
    assert not out.exists()


def test_hub_models_are_evaluated_predicted_and_exported_like_runs(
    cli, offline_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import write_image_folder

    monkeypatch.chdir(tmp_path)
    images = write_image_folder(tmp_path / "imgs", {"a": 2, "b": 2})
    ref = f"hf-hub:{TINY_REPO}"
    model = zoo.load(ref)
    assert model.info.arch == "timm:test_resnet" and model.image_size == (160, 160)
    predicted = json.loads(cli("predict", ref, images, "--json", "--top-k", "2").stdout)
    assert len(predicted) == 4 and len(predicted[0]["predictions"]) == 2
    # timm's weights predict ImageNet's 1000 classes: evaluated on data labelled as they are.
    result = cli("eval", ref, "--data", images, "--split", "all", code=2)
    assert "has classes the model does not know: a, b" in result.stderr
    cli("export", ref, "--format", "torchscript")
    assert (tmp_path / f"{TINY}.pt").is_file()  # beside the user, never in the cache
    snapshot = next((offline_cache / f"models--timm--{TINY}" / "snapshots").iterdir())
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "model.safetensors"]


@pytest.fixture
def hub(tmp_path: Path, tiny_files: dict[str, bytes]) -> FakeHub:
    with FakeHub() as server:
        server.add(TINY_REPO, tiny_files)
        server.add("acme/pickled", {"pytorch_model.bin": b"pickle", "config.json": b"{}"})
        server.add("acme/gated", tiny_files)
        server.repos["acme/gated"].gated = True
        env = {
            "HF_ENDPOINT": server.endpoint,
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
            "HF_HOME": str(tmp_path / "hf-home"),
        }
        with hub_environment(**env, HF_HUB_OFFLINE=None, HF_TOKEN=None):
            yield server


def test_downloads_fetch_only_safetensors_and_config_once(cli, hub: FakeHub, tmp_path: Path):
    ref = f"hf-hub:{TINY_REPO}"
    first = zoo.load(ref)
    fetched = sorted({path.rsplit("/", 1)[1] for method, path in hub.requests})
    assert fetched == ["config.json", "model.safetensors"]
    assert ("GET", f"/{TINY_REPO}/resolve/main/model.safetensors") in hub.requests
    hub.requests.clear()
    again = zoo.load(ref)  # from the cache: metadata checks, no download
    assert {method for method, _ in hub.requests} == {"HEAD"}
    assert torch.equal(first.net.fc.weight, again.net.fc.weight)
    commit = next(iter(hub.repos[TINY_REPO].revisions.values()))
    from hubtools import commit_of

    assert zoo.load(f"{ref}@{commit_of(commit)}").classes == first.classes


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "hf-hub:acme/nothing",
            "acme/nothing: no such model repository on the Hugging Face Hub, or it is private "
            "(log in with `hf auth login` or set HF_TOKEN if you have access)",
        ),
        (
            "hf-hub:acme/gated",
            "acme/gated is a gated repository on the Hugging Face Hub: accept its conditions",
        ),
        (
            f"hf-hub:{TINY_REPO}@v2",
            f"{TINY_REPO} has no revision 'v2' on the Hugging Face Hub",
        ),
        (
            "hf-hub:acme/pickled",
            "hf-hub:acme/pickled holds only pytorch_model.bin, a pickle file: zoo loads "
            "safetensors weights only and never unpickles",
        ),
        ("hf-hub:not a repo", "'hf-hub:not a repo' is not a Hugging Face Hub model"),
    ],
)
def test_hub_failures_are_one_line_and_write_nothing(
    cli, hub: FakeHub, folder: Path, tmp_path: Path, source: str, message: str
) -> None:
    out = tmp_path / "run"
    result = cli(
        "train", "--data", folder, "--arch", "test_resnet", "--init", source, "--out", out,
        "--epochs", "1", *SMALL, code=2,
    )  # fmt: skip
    error = result.stderr.strip()
    assert error.startswith("error: --init: ") and "\n" not in error, result.stderr
    assert message in error
    assert not out.exists()
    assert not any("pytorch_model.bin" in path and m == "GET" for m, path in hub.requests)


def test_an_endpoint_that_is_not_the_hub_is_named(cli, tmp_path: Path) -> None:
    with FakeHub(error_codes=False) as server:  # a 404 without the Hub's codes: a proxy, say
        env = {"HF_ENDPOINT": server.endpoint, "HF_HUB_CACHE": str(tmp_path / "c")}
        with hub_environment(**env, HF_HUB_OFFLINE=None):
            result = cli("eval", "hf-hub:acme/net", code=2)
    assert result.stderr.startswith("error: cannot download hf-hub:acme/net from http://127.0.0")
    assert "(HTTP 404) and it is not in the Hugging Face cache" in result.stderr


def test_a_cache_entry_holding_only_a_pickle_is_named_offline(cli, tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    cache_entry(cache, "acme/pickled", {"pytorch_model.bin": b"pickle", "config.json": b"{}"})
    with hub_environment(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache)):
        result = cli("eval", "hf-hub:acme/pickled", code=2)
    assert result.stderr == (
        f"error: hf-hub:acme/pickled holds only pytorch_model.bin in the Hugging Face cache "
        f"({cache}), a pickle file: zoo loads safetensors weights only and never unpickles; "
        "pick a repository with model.safetensors (timm's have one)\n"
    )


@pytest.mark.parametrize(
    ("named", "said"),
    [
        (
            "no_such_net",
            "names architecture 'no_such_net', which no installed plugin provides; its tensors "
            "fit timm:test_resnet (--arch) and are loaded",
        ),
        (
            "resnet18",
            "names timm:resnet18, not timm:test_resnet (--arch); its tensors fit it and are loaded",
        ),
    ],
)
def test_init_weights_that_name_another_architecture_are_warned_about(
    cli, folder: Path, tmp_path: Path, tiny_files: dict[str, bytes], named: str, said: str
) -> None:
    config = json.loads(tiny_files["config.json"])
    files = {**tiny_files, "config.json": json.dumps({**config, "architecture": named}).encode()}
    cache = tmp_path / "hf-cache"
    cache_entry(cache, "acme/renamed", files)
    with hub_environment(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_ENDPOINT=None):
        result = cli(
            "train", "--data", folder, "--arch", "test_resnet", "--init", "hf-hub:acme/renamed",
            "--epochs", "1", "--out", tmp_path / "run", *SMALL,
        )  # fmt: skip
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: --init: hf-hub:acme/renamed's config.json {said}"]
