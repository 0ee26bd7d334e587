"""Weights out: the model card every run directory gets (refreshed by ``zoo eval``) and
``zoo push``, checked offline (``--dry-run``) and against a local stand-in for the Hub; what it
uploads loads back through ``zoo.load("hf-hub:...")`` and timm with the same logits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import timm
import torch
from hubtools import FakeHub, cache_entry, hub_environment
from huggingface_hub import ModelCard

import zoo


def _card(run: Path) -> ModelCard:
    return ModelCard((run / "README.md").read_text())


def test_every_run_has_a_model_card_that_zoo_eval_refreshes(
    cli, small_run: Path, tmp_path: Path
) -> None:
    card = _card(small_run)
    data = card.data.to_dict()
    assert data["library_name"] == "zoo" and data["license"] == "other"
    assert data["tags"] == ["image-classification", "zoo"] and data["datasets"] == ["digits"]
    (accuracy, *_) = card.data.eval_results
    assert accuracy.metric_type == "accuracy" and accuracy.dataset_split == "validation"
    assert 0 < accuracy.metric_value <= 1
    assert "`0`, `1`, `2`" in card.text and 'zoo.load("' in card.text
    assert "timm.create_model" not in card.text  # simplecnn is not a timm architecture
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    result = cli("eval", run, "--no-plots")
    assert str(run / "README.md") in result.stdout
    refreshed = _card(run)
    names = [r.metric_name for r in refreshed.data.eval_results]
    assert "zoo eval accuracy" in names and "`zoo eval` on digits (val split" in refreshed.text
    # A README.md of the user's own is never replaced.
    (run / "README.md").write_text("# my notes\n")
    result = cli("eval", run, "--no-plots")
    assert "README.md was not written by zoo: left as it is" in result.stdout
    assert (run / "README.md").read_text() == "# my notes\n"


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A timm architecture trained for one epoch, with its EMA weights."""
    from conftest import Cli, write_image_folder

    root = tmp_path_factory.mktemp("card")
    data = write_image_folder(root / "images", {"ant": 6, "bee": 6})
    out = root / "run"
    Cli()(
        "train", "--data", data, "--arch", "test_resnet", "--image-size", "16", "--epochs", "1",
        "--batch-size", "4", "--ema", "--out", out,
    )  # fmt: skip
    return out


def test_push_dry_run_lists_the_files_and_what_it_lists_loads_from_the_hub_cache(
    cli, timm_run: Path, tmp_path: Path
) -> None:
    with hub_environment(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hf-cache")):
        result = cli("push", timm_run, "acme/tiny-resnet", "--dry-run", "--license", "mit")
    lines = result.stdout.splitlines()
    assert lines[0] == "would upload to https://huggingface.co/acme/tiny-resnet:"
    listed = [line.split()[0] for line in lines[1:-1]]
    assert listed == [
        "README.md", "config.json", "metrics.jsonl", "model.safetensors", "model_ema.safetensors",
    ]  # fmt: skip
    assert lines[-1] == "model card: valid"
    # Placed in a Hub cache entry, those files are a model that zoo and timm load from the Hub.
    files = {name: (timm_run / name).read_bytes() for name in listed if name != "README.md"}
    from zoo.models import push

    files["README.md"] = push.plan(timm_run, "acme/tiny-resnet", license_id="mit").card.encode()
    cache = tmp_path / "hf-cache"
    cache_entry(cache, "acme/tiny-resnet", files)
    with hub_environment(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache)):
        pulled = zoo.load("hf-hub:acme/tiny-resnet")
        net = timm.create_model("hf-hub:acme/tiny-resnet", pretrained=True).eval()
        card = ModelCard.load("acme/tiny-resnet")
    local = zoo.load(timm_run)
    x = local.preprocess(torch.randint(0, 256, (3, 3, 20, 24), dtype=torch.uint8))
    with torch.inference_mode():
        assert torch.equal(pulled(x), local(x)) and torch.equal(net(x), local(x))
    assert pulled.classes == ["ant", "bee"]
    data = card.data.to_dict()
    assert data["library_name"] == "timm" and data["license"] == "mit"
    assert "timm" in data["tags"] and 'zoo.load("hf-hub:acme/tiny-resnet")' in card.text
    assert 'timm.create_model("hf-hub:acme/tiny-resnet", pretrained=True)' in card.text


def test_push_uploads_one_commit_that_downloads_again(cli, timm_run: Path, tmp_path: Path) -> None:
    with FakeHub() as hub:
        env = {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
            "HF_HOME": str(tmp_path / "hf-home"),  # no token stored there
        }
        with hub_environment(**env, HF_HUB_OFFLINE=None, HF_TOKEN=None):
            refused = cli("push", timm_run, "acme/tiny", code=2)
        with hub_environment(**env, HF_HUB_OFFLINE=None, HF_TOKEN="hf_test"):
            result = cli("push", timm_run, "acme/tiny", "--revision", "v1", "--with-state")
            pulled = zoo.load("hf-hub:acme/tiny@v1")
    assert refused.stderr == (
        "error: zoo push needs a Hugging Face token with write access to acme/tiny: log in "
        "with `hf auth login` or set HF_TOKEN\n"
    )
    assert result.stdout.splitlines()[-1].startswith(f"pushed: {hub.endpoint}/acme/tiny/commit/")
    uploaded = hub.repos["acme/tiny"].revisions["v1"]
    assert {"README.md", "model.safetensors", "checkpoints/last.safetensors"} <= set(uploaded)
    assert "config.toml" not in uploaded and "summary.json" not in uploaded  # local paths
    assert uploaded["model.safetensors"] == (timm_run / "model.safetensors").read_bytes()
    assert pulled.classes == ["ant", "bee"]


HOSTILE = ["a`<img src=x onerror=alert(9)>", "b\n---\n<script>alert(1)", "c | *d* [e](f)"]


def test_class_and_folder_names_are_escaped_and_push_checks_the_cards_structure(
    cli, tmp_path: Path
) -> None:
    from conftest import write_image_folder
    from markdown_it import MarkdownIt

    from zoo.errors import ZooError
    from zoo.models import card

    data = write_image_folder(tmp_path / "<b>photos&amp;", {name: 4 for name in HOSTILE})
    run = tmp_path / "run `x` <i>"
    cli("train", "--data", data, "--image-size", "8", "--epochs", "1", "--out", run)
    text = (run / "README.md").read_text()
    body = ModelCard(text).text  # the Markdown after the YAML header
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    inline = [child for t in tokens for child in (t.children or [])]
    html = [t.content for t in [*tokens, *inline] if t.type.startswith("html_")]
    assert html == [body.lstrip().splitlines()[0] + "\n"]  # zoo's marker comment alone
    assert ModelCard(text).data.model_name == "run `x` <i>"  # YAML quotes it
    assert [t.tag for t in tokens if t.type == "heading_open"] == ["h1", "h2", "h2", "h2", "h2"]
    title = tokens[[t.type for t in tokens].index("heading_open") + 1].content
    assert MarkdownIt().renderInline(title) == "run `x` &lt;i&gt;"  # the text, literally
    codes = {t.content for t in inline if t.type == "code_inline"}
    assert {"a`<img src=x onerror=alert(9)>", "b\\n---\\n<script>alert(1)"} <= codes
    assert "c | *d* [e](f)" in codes  # in the classes line; escaped in the settings table
    assert "<b>photos&amp;" in codes  # the dataset, as a folder name
    card.validate(text)
    assert cli("push", run, "acme/x", "--dry-run").stdout.splitlines()[-1] == "model card: valid"
    # The card an unescaped name makes (as zoo wrote before it escaped them) is refused.
    raw = text.replace("``a`<img src=x onerror=alert(9)>``", "`a`<img src=x onerror=alert(9)>`")
    with pytest.raises(ZooError, match="raw HTML"):
        card.validate(raw)
    broken = text.replace("## Training", "## Training\n\n---\n\n# injected")
    with pytest.raises(ZooError, match="not valid"):
        card.validate(broken)


def test_stale_evaluations_are_labelled_and_a_run_being_written_is_refused(
    cli, small_run: Path, tmp_path: Path
) -> None:
    from zoo.train.rundir import RunLock

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    cli("eval", run, "--no-plots")
    assert "(val split, 359 images) of epoch 1:" in (run / "README.md").read_text()
    cli("train", "--resume", run, "--epochs", "2")
    refreshed = _card(run)
    assert "of epoch 1, not of these weights (epoch 2)" in refreshed.text
    assert "zoo eval accuracy" not in [r.metric_name for r in refreshed.data.eval_results]
    # While a process writes the run, zoo eval and zoo push leave it alone.
    lock = RunLock.acquire(run, resume=True)
    try:
        before = (run / "README.md").read_bytes()
        refused = cli("eval", run, "--no-plots", code=2)
        assert refused.stderr.startswith(f"error: zoo eval: the run {run} is being written by")
        pushed = cli("push", run, "acme/x", "--dry-run", code=2)
        assert pushed.stderr.startswith(f"error: {run} is being written by another zoo process")
        assert (run / "README.md").read_bytes() == before
    finally:
        lock.release()
    cli("eval", run, "--no-plots")
    assert "(val split, 359 images) of epoch 2:" in (run / "README.md").read_text()
