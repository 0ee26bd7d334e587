"""Training timm architectures, and moving weights between zoo and timm in both directions:
a zoo run is a timm ``local-dir:`` folder, a folder timm saved is an ``--init`` source and a
``zoo.load`` target. Real runs on small image folders, on the CPU, mostly with timm's own tiny
test models (test_vit, test_resnet: under 0.5M parameters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from timm.models import save_for_hf

import zoo
from zoo.models.weights import read_header

SMALL = ["--epochs", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("timm-data") / "images"
    return write_image_folder(root, {"cats": 8, "dogs": 8, "owls": 8})


@pytest.fixture(scope="module")
def vit_run(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ViT trained at 32x32 (its img_size follows --image-size), with a timm keyword."""
    from conftest import Cli

    out = tmp_path_factory.mktemp("runs") / "vit"
    arch = "test_vit:drop_path_rate=0.1"
    result = Cli()(
        "train", "--data", folder, "--arch", arch, "--image-size", "32", "--out", out, *SMALL
    )
    assert "arch timm:test_vit" in result.stdout
    return out


def test_resnet18_trains_on_the_cpu(cli, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "r18"
    result = cli(
        "train", "--data", folder, "--arch", "resnet18", "--image-size", "16", "--out", out, *SMALL
    )
    assert "arch timm:resnet18" in result.stdout and "device cpu" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet18" and "img_size" not in config["model_args"]
    assert config["pretrained_cfg"]["input_size"] == [3, 16, 16]


def test_a_vit_gets_the_image_size(vit_run: Path) -> None:
    config = json.loads((vit_run / "config.json").read_text())
    assert config["model_args"]["img_size"] == [32, 32]
    assert config["model_args"]["drop_path_rate"] == 0.1
    assert config["pretrained_cfg"]["fixed_input_size"] is True
    assert config["label_names"] == ["cats", "dogs", "owls"]
    assert config["zoo"]["arch"] == "timm:test_vit"
    assert zoo.load(vit_run).net.patch_embed.img_size == (32, 32)


@pytest.mark.cpu_kernels
def test_a_zoo_run_is_a_timm_folder_with_the_same_logits(vit_run: Path) -> None:
    model = timm.create_model(f"local-dir:{vit_run}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == ("cats", "dogs", "owls") or list(
        model.pretrained_cfg["label_names"]
    ) == ["cats", "dogs", "owls"]
    assert model.num_classes == 3
    loaded = zoo.load(vit_run)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    x = loaded.preprocess(images)  # resized and normalized as in training
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    # timm's own preprocessing settings match zoo's normalization
    data = timm.data.resolve_data_config({}, model=model)
    assert data["input_size"] == (3, 32, 32)
    assert list(data["mean"]) == pytest.approx(list(loaded.info.mean))


@pytest.fixture
def timm_folder(tmp_path: Path) -> Path:
    """A folder written by timm itself: a 5-class RGB ResNet with label names."""
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=5).eval()
    folder = tmp_path / "timm-resnet"
    labels = ["ant", "bee", "cow", "dog", "eel"]
    save_for_hf(model, str(folder), safe_serialization=True, model_config={"label_names": labels})
    return folder


@pytest.mark.cpu_kernels
def test_zoo_load_reads_a_folder_timm_saved(timm_folder: Path) -> None:
    loaded = zoo.load(timm_folder)
    assert loaded.info.arch == "timm:test_resnet"
    assert loaded.classes == ["ant", "bee", "cow", "dog", "eel"]
    assert loaded.image_size == (160, 160) and loaded.info.in_chans == 3
    reference = timm.create_model(f"local-dir:{timm_folder}", pretrained=True).eval()
    assert loaded.info.mean == pytest.approx(reference.pretrained_cfg["mean"])
    assert loaded.info.std == pytest.approx(reference.pretrained_cfg["std"])
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x), reference(x))
    # A weights file without zoo metadata, next to the config.json, loads the same way.
    assert zoo.load(timm_folder / "model.safetensors").classes == loaded.classes


def test_init_from_a_timm_folder_recreates_the_head_and_adapts_the_first_conv(
    cli, folder: Path, timm_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "finetuned"
    data = f"folder:root={folder},channels=1"
    result = cli(
        "train", "--data", data, "--arch", "test_resnet", "--init", timm_folder,
        "--image-size", "16", "--out", out, *SMALL,
    )  # fmt: skip
    assert (
        "classifier re-created for 3 classes (was 5); first conv conv1.0.weight adapted from 3 "
        "to 1 input channels" in " ".join(result.stdout.split())
    )
    tuned = load_file(str(out / "model.safetensors"))
    source = load_file(str(timm_folder / "model.safetensors"))
    assert tuned["fc.weight"].shape == (3, 96) and tuned["conv1.0.weight"].shape[1] == 1
    # Inputs are normalized as the timm weights expect (their RGB statistics, averaged for one
    # channel), not by this folder's statistics.
    info = read_header(out / "model.safetensors").info
    rgb = json.loads((timm_folder / "config.json").read_text())["pretrained_cfg"]
    assert info.mean == pytest.approx((sum(rgb["mean"]) / 3,))
    assert info.std == pytest.approx((sum(rgb["std"]) / 3,))
    # Started from the timm weights: early layers moved little from them.
    drift = (tuned["layer1.0.conv1.weight"] - source["layer1.0.conv1.weight"]).abs().mean()
    assert drift < 0.1 * source["layer1.0.conv1.weight"].abs().mean()


def test_init_from_a_zoo_runs_weights_file(
    cli, folder: Path, vit_run: Path, tmp_path: Path
) -> None:
    result = cli(
        "train", "--data", folder, "--arch", "test_vit", "--image-size", "32",
        "--init", vit_run / "model.safetensors", "--out", tmp_path / "again", *SMALL,
    )  # fmt: skip
    assert "(all tensors matched)" in result.stdout


def test_init_that_does_not_fit_names_the_tensors_and_overwrites_nothing(
    cli, folder: Path, timm_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "previous"
    cli("train", "--data", folder, "--arch", "simplecnn", "--image-size", "8", "--out", out, *SMALL)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = cli(
        "train", "--data", folder, "--arch", "test_convnext", "--init", timm_folder,
        "--image-size", "16", "--out", out, "--overwrite", *SMALL, code=2,
    )  # fmt: skip
    error = result.stderr.strip()
    assert error.startswith("error: --init: ") and "\n" not in error
    assert "does not match the architecture: missing stem.0.weight, stem.0.bias" in error
    assert "(config.json there names test_resnet)" in error
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_folders_zoo_cannot_use_are_refused_in_one_line(cli, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(zoo.ZooError, match="pickle file that zoo does not load"):
        zoo.load(pickled)
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(
        json.dumps({"architecture": "no_such_net", "num_classes": 2})
    )
    torch.manual_seed(0)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(unknown / "model.safetensors"))
    with pytest.raises(zoo.ZooError, match="architecture 'no_such_net', which no installed plugin"):
        zoo.load(unknown)


@pytest.mark.cpu_kernels
def test_resume_with_timm_components_ends_with_the_same_weights(
    cli, folder: Path, tmp_path: Path
) -> None:
    # Several updates an epoch, in odd batches that timm's mixup cannot take whole.
    args = [
        "--data", folder, "--arch", "simplecnn:hidden=16", "--image-size", "16",
        "--batch-size", "5",
        "--optimizer", "lamb", "--loss", "timm_ce",
        "--scheduler", "timm_step:decay_epochs=1,warmup_epochs=1,step_on_epochs=false",
        "--aug", "rand_augment:policy=rand-m5-n1", "--aug", "timm_mixup:mixup_alpha=0.4",
        "--lr", "0.01",
    ]  # fmt: skip
    cli("train", "--epochs", "2", "--out", tmp_path / "full", *args)
    cli("train", "--epochs", "1", "--out", tmp_path / "part", *args)
    resumed = cli("train", "--resume", tmp_path / "part", "--epochs", "2")
    assert "resumed at epoch 1" in resumed.stdout
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    part = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all(torch.equal(full[k], part[k]) for k in full)
