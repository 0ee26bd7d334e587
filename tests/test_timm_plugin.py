"""zoo-timm's registration: every timm architecture under its own name, names that never clash
with zoo's built-ins, timm's keywords passed through, and readable errors."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import timm
import torch

import zoo
from zoo.errors import ZooError
from zoo.plugins.build import get_registry

TIMM_SOURCE = f"zoo-timm=={metadata.version('zoo-timm')}"


def test_every_timm_model_is_an_architecture_under_its_timm_name() -> None:
    archs = {c.name: c for c in zoo.list_components("architecture") if c.plugin == "timm"}
    assert set(archs) == set(timm.list_models())
    assert len(archs) > 1300
    resnet = archs["resnet18"]
    assert resnet.qualified == "timm:resnet18" and resnet.source == TIMM_SOURCE
    assert resnet.summary == "timm resnet model, default input 224x224"


def test_list_filter_shows_timms_resnets_with_their_source(cli) -> None:
    out = cli("list", "architectures", "--filter", "resnet1*").stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("architecture")]
    assert rows[[r[1] for r in rows].index("resnet18")][:3] == [
        "architecture",
        "resnet18",
        TIMM_SOURCE,
    ]
    assert all(r[1].startswith("resnet1") and r[2] == TIMM_SOURCE for r in rows)
    assert f"{len(rows)} components: {TIMM_SOURCE} {len(rows)}" in out

    listed = json.loads(cli("list", "--json", "--filter", "timm:resnet18").stdout)
    assert [(c["qualified"], c["source"], c["conflict"]) for c in listed] == [
        ("timm:resnet18", TIMM_SOURCE, False)
    ]
    counts = cli("list").stdout.splitlines()[-1]
    assert f"{TIMM_SOURCE} " in counts and "zoo==" in counts


def test_no_timm_name_clashes_with_a_builtin_and_defaults_still_resolve() -> None:
    from zoo_timm.names import BUILTIN_NAMES

    registry = get_registry()
    assert registry.conflicts() == set()
    for kind in BUILTIN_NAMES:
        builtin = {
            n for c in registry.components(kind) if c.plugin == "zoo" for n in (c.name, *c.aliases)
        }
        timm_names = {
            n for c in registry.components(kind) if c.plugin == "timm" for n in (c.name, *c.aliases)
        }
        assert builtin <= BUILTIN_NAMES[kind], f"update zoo_timm.names for new {kind} built-ins"
        assert not builtin & timm_names
    for kind, name in [
        ("loss", "cross_entropy"),
        ("optimizer", "adam"),
        ("scheduler", "constant"),
        ("augmentation", "mixup"),
    ]:
        assert registry.resolve(kind, name).plugin == "zoo"
    renamed = {
        c.name for c in registry.components() if c.plugin == "timm" and c.name.startswith("timm_")
    }
    assert renamed == {
        "timm_ce",
        "timm_bce",
        "timm_sgd",
        "timm_adam",
        "timm_adamw",
        "timm_cosine",
        "timm_step",
        "timm_constant",
        "timm_random_erasing",
        "timm_mixup",
    }


def test_timm_components_of_every_kind_are_registered() -> None:
    names = {(c.kind, c.name) for c in zoo.list_components() if c.plugin == "timm"}
    assert {
        ("optimizer", "lamb"),
        ("optimizer", "lion"),
        ("optimizer", "adan"),
        ("scheduler", "tanh"),
        ("scheduler", "multistep"),
        ("loss", "asl"),
        ("loss", "poly"),
        ("augmentation", "rand_augment"),
        ("augmentation", "auto_augment"),
        ("augmentation", "augmix"),
    } <= names
    assert ("optimizer", "adahessian") not in names  # second order: zoo's trainer cannot drive it
    assert ("scheduler", "plateau") not in names and ("scheduler", "timm_plateau") not in names


def test_architectures_get_classes_channels_and_img_size_where_needed() -> None:
    net = zoo.create_model("resnet18", num_classes=3, in_chans=1, image_size=16)
    assert net(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    # A ViT's position embeddings follow the image size: img_size is passed.
    vit = zoo.create_model("vit_tiny_patch16_224", num_classes=4, in_chans=3, image_size=32)
    assert vit.patch_embed.img_size == (32, 32)
    assert vit(torch.rand(1, 3, 32, 32)).shape == (1, 4)
    rect = zoo.create_model("timm:vit_tiny_patch16_224", num_classes=2, image_size=(32, 48))
    assert rect(torch.rand(1, 3, 32, 48)).shape == (1, 2)


def test_timm_keywords_pass_through_the_spec() -> None:
    net = zoo.create_model("resnet18:drop_rate=0.25,drop_path_rate=0.1", num_classes=2)
    assert net.drop_rate == 0.25
    vit = zoo.create_model("vit_tiny_patch16_224:img_size=[48,48]", num_classes=2, image_size=32)
    assert vit.patch_embed.img_size == (48, 48)


def test_unknown_timm_keyword_is_one_line_naming_the_component() -> None:
    with pytest.raises(ZooError) as err:
        zoo.create_model("resnet18:drop_rat=0.1", num_classes=2)
    message = str(err.value)
    assert message.startswith("architecture 'timm:resnet18': unknown parameter 'drop_rat'")
    assert "did you mean drop_rate" in message and "\n" not in message
    assert err.value.exit_code == 2
    with pytest.raises(ZooError, match="pretrained is not a model keyword in zoo; start from"):
        zoo.create_model("resnet18:pretrained=true", num_classes=2)


def test_info_shows_default_input_and_timm_keywords(cli) -> None:
    out = cli("info", "resnet10t").stdout
    assert "timm:resnet10t (architecture) from " + TIMM_SOURCE in out
    assert "default input: 3x176x176" in out and "accepts: any keyword" in out
    lamb = cli("info", "lamb").stdout
    assert (
        "timm:lamb (optimizer)" in lamb
        and "betas=(0.9, 0.999)" in lamb
        and "lookahead=False" in lamb
    )
    momentum = cli("info", "momentum").stdout
    assert "momentum=0.9" in momentum  # timm's factory default, not the class's
    tanh = cli("info", "tanh").stdout
    assert "warmup_epochs=0" in tanh and "step_on_epochs=True" in tanh


def test_info_counts_parameters_at_the_image_size_asked_for(cli) -> None:
    # A ViT's position embedding grows with the input: 197 tokens at 224 px, 5 at 32 px.
    default = json.loads(cli("info", "vit_tiny_patch16_224", "--json").stdout)
    small = json.loads(cli("info", "vit_tiny_patch16_224", "--image-size", "32", "--json").stdout)
    assert default["default_input"] == "3x224x224" and small["default_input"] == "3x32x32"
    assert default["parameters_count"] - small["parameters_count"] == (197 - 5) * 192
    # HxW, parsed by the one parser zoo train and zoo benchmark use: 2 x 3 patches + 1 token
    wide = json.loads(cli("info", "vit_tiny_patch16_224", "--image-size", "32x48", "--json").stdout)
    assert wide["default_input"] == "3x32x48"
    assert default["parameters_count"] - wide["parameters_count"] == (197 - 7) * 192
    bad = cli("info", "simplecnn", "--image-size", "3x", code=2)
    assert bad.stderr == "error: image size must be N or HxW, got '3x'\n"


def test_unknown_optimizer_and_scheduler_keywords_fail_before_training(cli, tmp_path) -> None:
    result = cli(
        "train",
        "--arch",
        "simplecnn",
        "--optimizer",
        "lamb:bta=0.9",
        "--out",
        tmp_path / "r",
        code=2,
    )
    assert (
        "error: optimizer 'timm:lamb': unknown parameter 'bta'; did you mean betas?"
        in result.stderr
    )
    result = cli(
        "train",
        "--arch",
        "simplecnn",
        "--scheduler",
        "tanh:warmup=1",
        "--out",
        tmp_path / "r",
        code=2,
    )
    assert "error: scheduler 'timm:tanh': unknown parameter 'warmup'" in result.stderr
    assert not (tmp_path / "r").exists()
