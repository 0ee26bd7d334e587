"""Inference engines (``zoo.models.engines``): measured once per weights and CPU, cached beside
the weights (never through a symbolic link, never in the Hugging Face cache), checked against
eager PyTorch, and used by ``zoo predict`` and ``zoo eval``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import zoo
from zoo.builtins.loaders import digits_arrays
from zoo.models import engine_cache
from zoo.models.engines import ENGINES, prepare, versions

# Other tests' zoo eval and zoo predict of the session's small_run may have measured its engine
# already (into small_run/.zoo-inference): copies that must start unmeasured leave that out.
FRESH = shutil.ignore_patterns(engine_cache.FOLDER)


@pytest.fixture(scope="module")
def measured(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A copy of the digits run whose engine was measured (and cached) once."""
    run = tmp_path_factory.mktemp("measured") / "run"
    shutil.copytree(small_run, run, ignore=FRESH)
    return run, prepare(zoo.load(run), "auto", batch_size=8)


def probe() -> torch.Tensor:
    return torch.from_numpy(digits_arrays()[0][:16])


def test_auto_measures_every_engine_once_then_reuses_the_choice(measured) -> None:
    run, choice = measured
    assert choice.why == "measured" and set(choice.ms_per_image) == set(ENGINES[1:])
    assert choice.engine == min(choice.ms_per_image, key=choice.ms_per_image.get)
    (entry,) = (run / ".zoo-inference").iterdir()
    manifest = json.loads((entry / "engine.json").read_text())
    assert manifest["engine"] == choice.engine and manifest["versions"] == versions()
    assert bool(list(entry.glob("*.onnx"))) == (choice.engine == "onnxruntime")

    model = zoo.load(run)
    again = prepare(model, "auto", batch_size=8)
    assert (again.engine, again.why) == (choice.engine, "cached")
    assert again.ms_per_image == choice.ms_per_image
    eager = zoo.load(run)
    assert eager.engine is None
    got, expected = model.logits(probe()), eager.logits(probe())
    assert torch.allclose(got.softmax(1), expected.softmax(1), atol=1e-5)


@pytest.mark.parametrize("engine", ["torchscript", "onnxruntime"])
def test_each_engine_agrees_with_eager_pytorch(measured, engine: str) -> None:
    run, _ = measured
    model = zoo.load(run, engine=engine)
    assert model.engine.name == engine and model.channels_last == model.engine.channels_last
    expected = zoo.load(run).logits(probe())
    assert torch.allclose(model.logits(probe()), expected, atol=1e-4, rtol=1e-4)


def test_predict_and_eval_run_through_the_engine(cli, measured, tmp_path) -> None:
    run, _ = measured
    pixels, _ = digits_arrays()
    for i in range(4):
        Image.fromarray(pixels[i, 0]).save(tmp_path / f"{i}.png")
    eager = json.loads(cli("predict", run, tmp_path, "--json", "--engine", "eager").stdout)
    ort = json.loads(cli("predict", run, tmp_path, "--json", "--engine", "onnxruntime").stdout)
    for a, b in zip(eager, ort, strict=True):
        assert [p["class"] for p in a["predictions"]] == [p["class"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx(
            [p["probability"] for p in b["predictions"]], abs=1e-5
        )
    out = tmp_path / "eval"
    base = ["eval", run, "--json", "--no-plots", "--top-losses", "0", "--out", out]
    exact = json.loads(cli(*base, "--engine", "eager").stdout)
    fast = json.loads(cli(*base, "--engine", "onnxruntime").stdout)
    assert (exact["engine"], fast["engine"]) == ("eager", "onnxruntime")
    assert fast["count"] == exact["count"] == 359
    assert abs(fast["accuracy"] - exact["accuracy"]) <= 1 / 359
    assert fast["loss"] == pytest.approx(exact["loss"], abs=1e-4)


def test_few_images_run_eagerly_without_measuring(cli, small_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(small_run, run, ignore=FRESH)
    Image.fromarray(digits_arrays()[0][0, 0]).save(tmp_path / "one.png")
    cli("predict", run, tmp_path / "one.png")
    assert not (run / ".zoo-inference").exists()  # nothing measured, nothing written


def test_compiled_engines_need_the_cpu_in_fp32(cli, small_run, tmp_path) -> None:
    Image.fromarray(digits_arrays()[0][0, 0]).save(tmp_path / "one.png")
    args = ["predict", small_run, tmp_path / "one.png", "--precision", "bf16"]
    result = cli(*args, "--engine", "onnxruntime", code=2)
    assert result.stderr.startswith("error: --engine onnxruntime runs on the CPU in fp32")
    result = cli("predict", small_run, tmp_path / "one.png", "--engine", "onnx", code=2)
    assert result.stderr.startswith("error: unknown engine 'onnx'; did you mean onnxruntime?")
    model = zoo.load(small_run, precision="bf16")
    assert prepare(model, "auto").engine == "eager" and model.engine is None


def fake_weights(folder: Path, value: float, run: bool = True) -> Path:
    """A small zoo weights file (its header holds the digest of its tensors), in a run
    directory (beside a metrics.jsonl) unless ``run`` is False."""
    from zoo.models.weights import ModelInfo, save

    info = ModelInfo("zoo:simplecnn", {}, 2, 1, (8, 8), ["a", "b"], (0.5,), (0.25,), "0")
    folder.mkdir(parents=True, exist_ok=True)
    save(folder / "model.safetensors", {"w": torch.full((4,), value)}, info)
    if run:
        (folder / "metrics.jsonl").write_text('{"epoch": 1}\n')
    return folder / "model.safetensors"


def test_the_cache_is_keyed_by_the_weights_and_drops_stale_entries(tmp_path) -> None:
    weights = fake_weights(tmp_path / "run", 1.0)
    first = engine_cache.entry_for(weights, False, versions())
    assert first.folder == tmp_path / "run" / ".zoo-inference"
    assert engine_cache.write(first, {"engine": "onnxruntime"}, b"onnx bytes")
    manifest, data = engine_cache.read(first)
    assert manifest["engine"] == "onnxruntime" and data == b"onnx bytes"
    assert engine_cache.entry_for(weights, False, versions()) == first
    assert engine_cache.entry_for(weights, False, {"torch": "0"}) != first  # other libraries

    fake_weights(tmp_path / "run", 2.0)  # trained again: new weights, a new entry
    second = engine_cache.entry_for(weights, False, versions())
    assert second != first and engine_cache.read(second) is None
    assert engine_cache.write(second, {"engine": "eager"}, None)
    assert [p.name for p in first.folder.iterdir()] == [second.name]  # the stale one is gone

    onnx = next(first.folder.glob("*/*.onnx"), None)
    assert onnx is None  # an eager choice keeps no model
    engine_cache.write(second, {"engine": "onnxruntime"}, b"exported")
    (model_file,) = second.path.glob("*.onnx")
    model_file.write_bytes(b"damaged")  # no longer what the manifest's digest says
    assert engine_cache.read(second) is None


def test_the_cache_never_writes_through_a_symbolic_link(tmp_path) -> None:
    weights = fake_weights(tmp_path / "run", 1.0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run" / ".zoo-inference").symlink_to(elsewhere)
    entry = engine_cache.entry_for(weights, False, versions())
    assert not engine_cache.write(entry, {"engine": "eager"}, None)
    assert list(elsewhere.iterdir()) == [] and engine_cache.read(entry) is None

    (tmp_path / "run" / ".zoo-inference").unlink()
    entry.folder.mkdir()
    entry.path.symlink_to(elsewhere)  # the entry itself a link
    assert not engine_cache.write(entry, {"engine": "eager"}, None)
    assert list(elsewhere.iterdir()) == [] and engine_cache.read(entry) is None
    entry.path.unlink()
    entry.path.mkdir()
    (entry.path / engine_cache.MANIFEST).symlink_to(elsewhere / "planted.json")
    (elsewhere / "planted.json").write_text('{"engine": "onnxruntime"}')
    assert engine_cache.read(entry) is None  # a planted link is not followed
    assert engine_cache.write(entry, {"engine": "eager"}, None)  # it is replaced, not followed
    assert (elsewhere / "planted.json").read_text() == '{"engine": "onnxruntime"}'
    assert not (entry.path / engine_cache.MANIFEST).is_symlink()


def test_weights_not_in_a_folder_of_ours_keep_their_entry_in_zoos_cache(
    tmp_path, monkeypatch
) -> None:
    from huggingface_hub import constants

    from zoo.plugins.cache import cache_dir

    weights = fake_weights(tmp_path / "run", 1.0)
    ours = cache_dir() / "inference"
    assert engine_cache.entry_for(weights, True, versions()).folder == ours  # hf-hub:
    link = tmp_path / "link" / "model.safetensors"
    link.parent.mkdir()
    link.symlink_to(weights)
    (link.parent / "metrics.jsonl").write_text("")
    assert engine_cache.entry_for(link, False, versions()).folder == ours
    alone = fake_weights(tmp_path / "downloads", 1.0, run=False)  # not a run directory
    assert engine_cache.entry_for(alone, False, versions()).folder == ours
    hf_cache = tmp_path / "hf-cache"
    snapshot = fake_weights(hf_cache / "models--a--b" / "snapshots" / "abc", 1.0)  # a run, even
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    entry = engine_cache.entry_for(snapshot, False, versions())
    assert entry.folder == ours and engine_cache.write(entry, {"engine": "eager"}, None)
    names = sorted(p.name for p in snapshot.parent.iterdir())
    assert names == ["metrics.jsonl", "model.safetensors"]
