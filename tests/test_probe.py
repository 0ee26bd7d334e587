"""``zoo probe``: pretrained backbones ranked on the user's data by linear probes on frozen
features, offline, from Hugging Face cache entries of timm's tiny test networks with random
weights (made here, as timm saves them for the Hub), and from a plugin's own architectures.

The figures that matter for speed (extraction against ``zoo benchmark``, a second probe against
the first) are measured by benchmarks/probe.py, not here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from hubtools import cache_entry, hub_environment, timm_files
from mosaics import write_mosaics
from safetensors.torch import load_file, save_file

import zoo
from zoo.plugins.build import add_plugin

RESNET = "test_resnet.r160_in1k"
EFFNET = "test_efficientnet.r160_in1k"
SMALL = ["--image-size", "16", "--batch-size", "16"]


@pytest.fixture(scope="module")
def hub_files() -> dict[str, dict[str, bytes]]:
    return {name: timm_files(name) for name in (RESNET, EFFNET)}


@pytest.fixture
def offline(
    tmp_path: Path, hub_files: dict[str, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A Hugging Face cache holding the two tiny networks, used offline, and a zoo cache of
    this test's own (where the features go)."""
    cache = tmp_path / "hf-cache"
    for name, files in hub_files.items():
        cache_entry(cache, f"timm/{name}", files)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zoo-cache"))
    with hub_environment(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_ENDPOINT=None):
        yield cache


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import write_digit_folder

    return write_digit_folder(tmp_path_factory.mktemp("probe-data") / "digits", [0, 1, 2], 20)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: size and modification time (links not followed)."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def test_probe_ranks_both_and_a_second_probe_reads_the_feature_cache(
    cli, offline: Path, folder: Path, tmp_path: Path
) -> None:
    """The issue's command, offline: both ranked with accuracies, speed and the fine-tune
    command; a second probe (another --out) extracts nothing and gives the same numbers."""
    hub_before = _tree(offline)
    first = cli("probe", "--data", folder, "--arch", RESNET, "--arch", EFFNET, "--pretrained",
                "--json", "--out", tmp_path / "p1", *SMALL)  # fmt: skip
    report = json.loads(first.stdout)
    rows = report["candidates"]
    assert [r["rank"] for r in rows] == [1, 2]
    assert {r["name"] for r in rows} == {RESNET, EFFNET}
    for r in rows:
        assert r["status"] == "ok" and r["cached"] is False
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["knn_accuracy"] <= 1 and 0 <= r["f1"] <= 1
        assert r["images_per_second"] > 0 and r["params"] > 0 and r["gmacs"] > 0
        assert (r["train_images"], r["val_images"]) == (48, 12) and r["image_size"] == [16, 16]
    assert rows[0]["accuracy"] >= rows[1]["accuracy"]
    best = rows[0]["name"]
    command = f"zoo train --data {folder} --arch {best} --pretrained --image-size 16"
    assert report["best"] == best and report["train_command"] == command
    assert first.stderr.strip().splitlines()[-1] == command  # the last line
    out = tmp_path / "p1"
    assert json.loads((out / "probe.json").read_text()) == report
    csv_lines = (out / "probe.csv").read_text().splitlines()
    assert csv_lines[0].startswith("rank,name,status,accuracy") and len(csv_lines) == 3
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    features = Path(os.environ["ZOO_CACHE_DIR"]) / "features"
    cached = _tree(features)
    # each one's features and the scores fitted on them, the data's facts, the plot
    kinds = sorted(("data" if n.startswith("data-") else "plot" if n.startswith("plot-") else "")
                   + Path(n).suffix for n in cached)  # fmt: skip
    assert kinds == [".json"] * 2 + [".safetensors"] * 2 + ["data.json", "plot.png"]
    assert _tree(offline) == hub_before  # nothing written into the Hugging Face cache

    second = cli("probe", "--data", folder, "--arch", RESNET, "--arch", EFFNET, "--json",
                 "--out", tmp_path / "p2", *SMALL)  # fmt: skip
    again = json.loads(second.stdout)["candidates"]
    assert all(r["cached"] for r in again)
    keys = ("name", "accuracy", "f1", "knn_accuracy", "images_per_second", "C")
    assert [{k: r[k] for k in keys} for r in again] == [{k: r[k] for k in keys} for r in rows]
    assert _tree(features) == cached  # read, not written again
    assert "features from the cache" in second.stderr
    assert (tmp_path / "p2" / "probe.png").read_bytes() == (out / "probe.png").read_bytes()

    # The table, and a recommendation under a speed no candidate reaches.
    table = cli("probe", "--data", folder, "--arch", "test_resnet.*", "--arch",
                "test_efficientnet.*", "--min-img-s", "1e12", "--out", tmp_path / "p3",
                *SMALL)  # fmt: skip
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["rank", "weights", "accuracy", "f1"]
    assert "no candidate reaches --min-img-s 1e+12" in table.stdout
    assert "zoo train" not in table.stdout


def test_a_second_probe_imports_no_torch_and_a_changed_folder_is_read_again(
    cli, offline: Path, folder: Path, tmp_path: Path
) -> None:
    """A probe whose candidates are all cached reads the rows from the cache without torch (a
    process of its own shows it); any change to the folder's files gives the data a new
    stamp, so the features are extracted again."""
    import shutil
    import subprocess
    import sys

    data = tmp_path / "digits"
    shutil.copytree(folder, data)
    args = ["probe", "--data", str(data), "--arch", RESNET, "--json", *SMALL]
    first = json.loads(cli(*args, "--out", tmp_path / "p1").stdout)["candidates"]
    code = (
        "import sys\nfrom zoo.cli import main\nsys.argv = ['zoo', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\n"
    )
    second = subprocess.run(
        [sys.executable, "-c", code, *args, "--out", str(tmp_path / "p2")],
        capture_output=True, text=True, check=True, env=os.environ,
    )  # fmt: skip
    assert second.stderr.strip().splitlines()[-1] == "no torch", second.stderr
    again = json.loads(second.stdout)["candidates"]
    assert again[0]["cached"] and again[0]["accuracy"] == first[0]["accuracy"]

    # One image rewritten with other pixels (same name, same size on disk is not needed).
    image = sorted(data.rglob("*.png"))[0]
    other = sorted(data.rglob("*.png"))[-1]
    image.write_bytes(other.read_bytes())
    third = json.loads(cli(*args, "--out", tmp_path / "p3").stdout)["candidates"]
    assert third[0]["status"] == "ok" and third[0]["cached"] is False


def test_the_help_offers_every_form_of_data(cli) -> None:
    # the probe reads --data through the data-source protocol, as zoo train does
    words = cli("probe", "--help").stdout.split()
    assert {"(hf:ORG/NAME,", "wds:DIR_OR_URL),", "table", "(.csv,", ".parquet)."} <= set(words)


def test_the_logistic_regression_and_knn_agree_with_scikit_learn(
    offline: Path, folder: Path
) -> None:
    """On the cached features, at the C the probe chose: scikit-learn's LogisticRegression
    within half a point, and its cosine KNeighborsClassifier exactly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    (row,) = zoo.probe(str(folder), RESNET, image_size=16, batch_size=16)
    (file,) = (Path(os.environ["ZOO_CACHE_DIR"]) / "features").glob("*.safetensors")
    f = {k: v.numpy() for k, v in load_file(str(file)).items()}
    scaler = StandardScaler().fit(f["train"])
    reference = LogisticRegression(C=row["C"], max_iter=10_000)
    reference.fit(scaler.transform(f["train"]), f["train_labels"])
    theirs = reference.score(scaler.transform(f["val"]), f["val_labels"])
    assert abs(row["accuracy"] - theirs) <= 0.005
    knn = KNeighborsClassifier(n_neighbors=20, metric="cosine").fit(f["train"], f["train_labels"])
    assert row["knn_accuracy"] == pytest.approx(knn.score(f["val"], f["val_labels"]))


def test_the_fit_matches_scikit_learn_on_harder_data() -> None:
    """Overlapping classes, where the regularization matters: every C of the grid, same
    objective, within half a point of scikit-learn on 600 validation points."""
    from sklearn.linear_model import LogisticRegression

    from zoo.probing.linear import C_GRID, fit_logistic, standardize

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 24, generator=g)
    y = torch.arange(1800) % 5
    x = centres[y] + 2.5 * torch.randn(1800, 24, generator=g)
    train, val = standardize(x[:1200], x[1200:])
    for C in C_GRID[:-1]:  # the weakest regularization is scikit-learn's slowest fit
        w, b = fit_logistic(train, y[:1200], 5, C)
        ours = (val @ w + b).argmax(1).eq(y[1200:]).float().mean().item()
        reference = LogisticRegression(C=C, max_iter=10_000).fit(train.numpy(), y[:1200].numpy())
        assert abs(ours - reference.score(val.numpy(), y[1200:].numpy())) <= 0.005, C


def test_failures_are_rows_with_a_reason_and_bad_input_is_one_line(
    cli, offline: Path, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "probe"
    # Not in the cache offline; weights whose position embeddings do not fit 16 px.
    result = cli("probe", "--data", folder, "--arch", RESNET, "--arch", "test_convnext.r160_in1k",
                 "--arch", "test_vit.r160_in1k", "--json", "--out", out, *SMALL)  # fmt: skip
    rows = {r["name"]: r for r in json.loads(result.stdout)["candidates"]}
    assert rows[RESNET]["rank"] == 1
    missing = rows["test_convnext.r160_in1k"]
    assert missing["status"] == "failed" and missing["rank"] is None
    assert missing["reason"].startswith("hf-hub:timm/test_convnext.r160_in1k is not in the")
    assert "HF_HUB_OFFLINE is set" in missing["reason"] and "\n" not in missing["reason"]
    assert rows["test_vit.r160_in1k"]["status"] == "failed"
    # When no candidate could be scored, the table still says why, and the command fails.
    result = cli("probe", "--data", folder, "--arch", "test_convnext.r160_in1k", "--out",
                 tmp_path / "none", *SMALL, code=1)  # fmt: skip
    assert "failed: hf-hub:timm/test_convnext.r160_in1k is not in the" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no candidate could be probed; the table says why"
    )

    for args, message in [
        (["--arch", "resnet18.a1_in1kk"], "error: --arch resnet18.a1_in1kk: architecture "
         "'timm:resnet18' has no pretrained tag 'a1_in1kk'; did you mean a1_in1k"),
        (["--arch", "nosuch_*"], "error: --arch 'nosuch_*' matches no pretrained weights"),
        (["--arch", "simplecnn"], "error: --arch simplecnn: architecture 'zoo:simplecnn' has no "
         "pretrained weights"),
        (["--arch", RESNET, "--budget", "soon"], "error: --budget must be a duration such as"),
        (["--arch", RESNET, "--max-params", "-3"], "error: --max-params must be a number"),
        (["--arch", RESNET, "--max-params", "1k"], "error: no candidate is left: 1 candidate "
         "over --max-params 1,000"),
    ]:  # fmt: skip
        result = cli("probe", "--data", folder, *args, "--out", tmp_path / "bad", code=2)
        assert result.stderr.strip().startswith(message), result.stderr
        assert "\n" not in result.stderr.strip()
    result = cli("probe", "--data", tmp_path / "nowhere", "--arch", RESNET, "--out",
                 tmp_path / "bad", code=2)  # fmt: skip
    assert "does not exist" in result.stderr
    assert not (tmp_path / "bad").exists()
    # An earlier probe is continued with --resume, never overwritten.
    result = cli("probe", "--data", folder, "--arch", RESNET, "--out", out, code=2)
    assert f"--out {out} holds an earlier probe; continue it with --resume {out}" in result.stderr
    result = cli("probe", "--resume", out, "--arch", EFFNET, code=2)
    assert "--resume continues with the probe's own settings; leave out --arch" in result.stderr


@pytest.fixture(scope="module")
def mosaics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table of label sets: digit mosaics (1-4 digits each), 120 for training, 60 to
    validate."""
    return write_mosaics(tmp_path_factory.mktemp("probe-mosaics"), counts=(120, 60, 0))


def test_multi_label_data_is_probed_one_vs_rest_and_ranked_by_map(
    cli, offline: Path, mosaics: Path, tmp_path: Path
) -> None:
    """A table of label sets: each candidate's one-vs-rest mAP, micro and macro F1 and kNN
    mAP, ranked by mAP, in every output; a second probe reads the cache; a budget-stopped
    probe resumes; the command shown trains the multi-label task."""
    first = cli("probe", "--data", mosaics, "--arch", RESNET, "--arch", EFFNET, "--json",
                "--out", tmp_path / "p1", *SMALL)  # fmt: skip
    report = json.loads(first.stdout)
    rows = report["candidates"]
    assert [r["rank"] for r in rows] == [1, 2] and {r["name"] for r in rows} == {RESNET, EFFNET}
    for r in rows:
        assert (r["status"], r["task"], r["cached"]) == ("ok", "multi-label", False)
        assert all(0 <= r[k] <= 1 for k in ("map", "knn_map", "f1_micro", "f1")), r
        assert (r["accuracy"], r["knn_accuracy"]) == (None, None)  # no silent mAP as accuracy
        assert (r["train_images"], r["val_images"]) == (120, 60)
    assert rows[0]["map"] >= rows[1]["map"]
    best = rows[0]["name"]
    command = f"zoo train --data {mosaics} --arch {best} --pretrained --image-size 16"
    assert report["train_command"] == command
    assert first.stderr.strip().splitlines()[-1] == command
    header = (tmp_path / "p1" / "probe.csv").read_text().splitlines()[0].split(",")
    assert {"map", "f1_micro", "knn_map", "task"} <= set(header)
    assert (tmp_path / "p1" / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    second = cli("probe", "--data", mosaics, "--arch", RESNET, "--arch", EFFNET, "--json",
                 "--out", tmp_path / "p2", *SMALL)  # fmt: skip
    again = json.loads(second.stdout)["candidates"]
    assert all(r["cached"] for r in again)
    keys = ("name", "map", "f1_micro", "f1", "knn_map", "C")
    assert [{k: r[k] for k in keys} for r in again] == [{k: r[k] for k in keys} for r in rows]

    # The table's columns, a probe the budget stopped after its first candidate, resumed.
    out = tmp_path / "p3"
    cut = cli("probe", "--data", mosaics, "--arch", RESNET, "--arch", EFFNET, "--budget",
              "0.001s", "--out", out, *SMALL)  # fmt: skip
    assert cut.stdout.splitlines()[0].split()[:7] == [
        "rank", "weights", "mAP", "micro", "f1", "knn", "mAP"
    ]  # fmt: skip
    assert f"[1/2] {EFFNET}: mAP " in cut.stderr and "skipped" in cut.stdout
    resumed = json.loads(cli("probe", "--resume", out, "--json").stdout)["candidates"]
    assert [(r["status"], r["task"]) for r in resumed] == [("ok", "multi-label")] * 2
    assert [r["map"] for r in resumed] == [r["map"] for r in rows]

    # The command shown trains the multi-label task (zoo train takes it from the data).
    cli(*command.split()[1:], "--epochs", "1", "--batch-size", "32", "--out", tmp_path / "run")
    assert 'task = "multi-label"' in (tmp_path / "run" / "config.toml").read_text()


def test_the_one_vs_rest_fit_and_knn_agree_with_scikit_learn() -> None:
    """Overlapping label sets on synthetic features: mAP of the one-vs-rest fit within half a
    point of scikit-learn's OneVsRestClassifier(LogisticRegression) at each C, and the kNN's
    label shares those of its cosine KNeighborsClassifier."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier

    from zoo.probing.linear import C_GRID, fit_logistic, standardize
    from zoo.probing.multilabel import knn_shares, mean_average_precision

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1200, 16, generator=g)
    mixing = torch.randn(16, 6, generator=g)
    y = ((x @ mixing + 3.0 * torch.randn(1200, 6, generator=g)) > 1.0).float()
    train, val = standardize(x[:900], x[900:])
    ty, vy = y[:900], y[900:]
    for C in C_GRID[:-1]:
        w, b = fit_logistic(train, ty, 6, C)
        ours = mean_average_precision((val @ w + b).sigmoid(), vy)
        reference = OneVsRestClassifier(LogisticRegression(C=C, max_iter=10_000))
        reference.fit(train.numpy(), ty.numpy())
        theirs = mean_average_precision(torch.from_numpy(reference.predict_proba(val.numpy())), vy)
        assert abs(ours - theirs) <= 0.005, (C, ours, theirs)
    knn = KNeighborsClassifier(n_neighbors=20, metric="cosine").fit(x[:900].numpy(), ty.numpy())
    expected = np.stack([p[:, 1] for p in knn.predict_proba(x[900:].numpy())], axis=1)
    assert np.allclose(knn_shares(x[:900], ty, x[900:]).numpy(), expected)


def test_budget_skips_the_rest_and_resume_probes_them(
    cli, offline: Path, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "probe"
    result = cli("probe", "--data", folder, "--arch", "test_resnet.*", "--arch",
                 "test_efficientnet.*", "--budget", "0.001s", "--json", "--out", out,
                 *SMALL)  # fmt: skip
    rows = json.loads(result.stdout)["candidates"]
    assert [r["status"] for r in rows] == ["ok", "skipped"]  # the smallest ran first
    assert rows[0]["name"] == EFFNET
    assert rows[1]["reason"] == "not started: the --budget of 0.001s ran out"
    resumed = cli("probe", "--resume", out, "--json")
    again = json.loads(resumed.stdout)["candidates"]
    assert [r["status"] for r in again] == ["ok", "ok"]
    assert {r["name"]: r.get("resumed", False) for r in again} == {EFFNET: True, RESNET: False}
    assert json.loads((out / "probe.json").read_text())["finished"] is True


def test_train_goes_on_to_fine_tune_the_best(
    cli, offline: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("probe", "--data", folder, "--arch", EFFNET, "--train", *SMALL)
    (probe_dir,) = (tmp_path / "runs").glob("probe-*")
    (run_dir,) = (tmp_path / "runs").glob(f"{EFFNET}-*")
    assert (probe_dir / "probe.csv").is_file()
    config = (run_dir / "config.toml").read_text()
    assert 'arch = "timm:test_efficientnet"' in config and "pretrained = true" in config
    assert 'image_size = "16"' in config
    assert f"tensors from hf-hub:timm/{EFFNET}" in result.stdout


class _Tiny(torch.nn.Module):
    """A zoo architecture that names its classifier (timm's get_classifier()) and nothing else."""

    def __init__(self, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(in_chans, 6, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2)
        )
        self.head = torch.nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))

    def get_classifier(self) -> torch.nn.Module:
        return self.head


class _Opaque(_Tiny):
    get_classifier = None  # type: ignore[assignment]


class _Plugin:
    @zoo.hookimpl
    def zoo_register_architectures(self, register) -> None:  # type: ignore[no-untyped-def]
        for name, cls in (("tiny", _Tiny), ("opaque", _Opaque)):
            tag = {"tag": "v1", "hub_id": f"acme/{name}", "input_size": [3, 12, 12],
                   "num_classes": 7}  # fmt: skip
            register(
                name,
                lambda num_classes, in_chans, image_size, cls=cls: cls(num_classes, in_chans),
                extra={"pretrained": [tag]},
            )


def test_a_zoo_architecture_gives_its_classifiers_input(
    offline: Path, folder: Path, tmp_path: Path
) -> None:
    """The contract for networks without timm's forward_head: the input of get_classifier()'s
    module; a network with neither is a failed row saying so."""
    from zoo.plugins.components import resolve
    from zoo.probing.features import penultimate

    add_plugin(_Plugin(), "acme")
    for name in ("tiny", "opaque"):
        torch.manual_seed(0)
        weights = tmp_path / f"{name}.safetensors"
        save_file(_Tiny(7, 3).state_dict(), str(weights))
        cache_entry(offline, f"acme/{name}", {"model.safetensors": weights.read_bytes()})
    rows = {r["name"]: r for r in zoo.probe(str(folder), "acme:*", batch_size=16)}
    assert rows["tiny.v1"]["status"] == "ok" and rows["tiny.v1"]["features"] == 24
    assert rows["tiny.v1"]["image_size"] == [12, 12]
    assert rows["opaque.v1"]["reason"] == (
        "architecture 'acme:opaque' gives no penultimate features: it has neither "
        "forward_features() and forward_head(pre_logits=True) (timm's convention) nor "
        "get_classifier()"
    )
    net = resolve("architecture", "tiny").build(num_classes=7, in_chans=3, image_size=12)
    x = torch.randn(2, 3, 12, 12)
    assert torch.equal(penultimate(net, "tiny")(x), net.body(x).flatten(1))
    timm_net = resolve("architecture", "test_resnet").build(
        num_classes=5, in_chans=3, image_size=16
    )
    expected = timm_net.forward_head(timm_net.forward_features(x), pre_logits=True)
    assert torch.equal(penultimate(timm_net, "test_resnet")(x), expected)


def test_a_streamed_folder_gives_the_features_of_one_held_in_memory(
    offline: Path, folder: Path
) -> None:
    """--data goes through the dataset's own path: a folder too large for its memory budget
    streams through loader workers; the same folder held in memory is the same pixels, so
    its features (and scores) come from the cache the streamed probe filled."""
    streamed = zoo.probe(
        f"folder:root={folder},max_memory_mb=0.001", EFFNET, image_size=16, batch_size=16,
        workers=1,
    )  # fmt: skip
    held = zoo.probe(str(folder), EFFNET, image_size=16, batch_size=16)
    assert (streamed[0]["status"], streamed[0]["cached"], held[0]["cached"]) == ("ok", False, True)
    keys = ("accuracy", "f1", "knn_accuracy", "C", "train_images", "val_images")
    assert [{k: r[k] for k in keys} for r in streamed] == [{k: r[k] for k in keys} for r in held]


def test_streamed_label_sets_give_the_features_of_held_ones(offline: Path, mosaics: Path) -> None:
    """A table of label sets too large for its memory budget streams its label sets as padded
    index lists; the probe keeps label vectors either way, so the held table's features and
    scores come from the cache the streamed probe filled."""
    streamed = zoo.probe(
        f"table:file={mosaics},max_memory_mb=0.001", EFFNET, image_size=16, batch_size=16,
        workers=0,
    )  # fmt: skip
    held = zoo.probe(str(mosaics), EFFNET, image_size=16, batch_size=16)
    assert (streamed[0]["status"], streamed[0]["cached"], held[0]["cached"]) == ("ok", False, True)
    keys = ("task", "map", "f1_micro", "f1", "knn_map", "C", "train_images", "val_images")
    assert [{k: r[k] for k in keys} for r in streamed] == [{k: r[k] for k in keys} for r in held]


def test_a_damaged_or_unwritable_feature_cache_only_costs_the_extraction(
    offline: Path,
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (first,) = zoo.probe(str(folder), EFFNET, image_size=16, batch_size=16)
    (file,) = (Path(os.environ["ZOO_CACHE_DIR"]) / "features").glob("*.safetensors")
    file.write_bytes(file.read_bytes()[:100])  # cut short, as by a full disk elsewhere
    (again,) = zoo.probe(str(folder), EFFNET, image_size=16, batch_size=16)
    assert (again["status"], again["cached"], again["accuracy"]) == ("ok", False, first["accuracy"])
    assert len(load_file(str(file))["train"]) == 48  # written whole again
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(blocker / "cache"))
    capsys.readouterr()
    (row,) = zoo.probe(str(folder), EFFNET, image_size=16, batch_size=16)
    assert (row["status"], row["accuracy"]) == ("ok", first["accuracy"])
    warned = [line for line in capsys.readouterr().err.splitlines() if "feature cache" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: cannot write the feature cache")
