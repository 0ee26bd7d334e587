"""Multi-label classification end to end: a table of label sets trains with BCE, chooses a
threshold per class on validation, and evaluates, predicts, exports, reports, pushes (dry run)
and loads back with its thresholds; the metrics against scikit-learn; bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mosaics import write_mosaics

import zoo
from zoo.data.decoder import decode_image
from zoo.files.reading import read_toml
from zoo.labeling.label_sets import at_thresholds, average_precision, choose_thresholds


@pytest.fixture(scope="module")
def mosaics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mosaics(tmp_path_factory.mktemp("mosaics"), counts=(200, 60, 60))


@pytest.fixture(scope="module")
def ml_run(mosaics: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs of zoo's defaults on the mosaics at 32x32."""
    from conftest import Cli

    out = tmp_path_factory.mktemp("ml-run") / "run"
    result = Cli()(
        "train", "--data", mosaics, "--image-size", "32", "--epochs", "2", "--batch-size", "32",
        "--out", out,
    )  # fmt: skip
    (out / "train.stdout").write_text(result.stdout)
    return out


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_label_sets_train_with_bce_and_record_their_task(ml_run: Path) -> None:
    config = read_toml(ml_run / "config.toml")
    assert (config["task"], config["loss"], config["monitor"]) == (
        "multi-label",
        "zoo:bce",
        "val_map",
    )
    assert config["arch"] == "zoo:simplecnn:widths=[32,64,128,256],norm=true,pool=max"
    records = _records(ml_run)
    for key in ("val_map", "val_f1_micro", "val_f1_macro", "val_exact", "val_hamming"):
        assert all(0 <= r[key] <= 1 for r in records), key
    assert records[-1]["val_map"] > records[0]["val_map"]
    assert records[-1]["val_map"] > 0.4  # the labels' base rate, what chance ranks at, is 0.25
    summary = json.loads((ml_run / "summary.json").read_text())
    assert summary["best"]["metric"] == "val_map"
    assert "val_map" in (ml_run / "train.stdout").read_text()
    from conftest import Cli

    listing = Cli()("runs", ml_run.parent).stdout
    assert f"val_map {max(r['val_map'] for r in records):.4f}" in listing


def test_thresholds_chosen_on_validation_are_in_the_weights_and_config_json(
    ml_run: Path,
) -> None:
    model = zoo.load(ml_run)
    assert model.task == "multi-label"
    thresholds = model.thresholds
    assert list(thresholds) == model.classes == [str(d) for d in range(10)]
    assert all(0 < t < 1 for t in thresholds.values())
    assert len(set(thresholds.values())) > 1  # one per class, not one for all
    hf = json.loads((ml_run / "config.json").read_text())
    assert hf["problem_type"] == "multi_label_classification"
    assert hf["thresholds"] == thresholds
    # As timm users load the folder (config.json beside the weights): the same thresholds.
    folder = zoo.load(ml_run / "model.safetensors")
    assert folder.thresholds == thresholds


def test_eval_predict_export_report_and_push_answer_with_label_sets(
    cli, ml_run: Path, mosaics: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    cli("eval", ml_run, "--split", "test", "--out", out, "--tta-mode", "crops")
    report = json.loads((out / "eval.json").read_text())
    assert report["task"] == "multi-label" and report["count"] == 60
    assert {"pr_curves.png", "calibration.png", "top_losses.png"} <= set(report["pictures"])
    assert report["thresholds"] == zoo.load(ml_run).thresholds
    assert [r["class"] for r in report["calibration"]["per_class"]] == report["classes"]
    assert report["top_losses"][0]["true"] != report["top_losses"][0]["predicted"]
    assert report["tta"]["views"] == 5 and 0 <= report["tta"]["map"] <= 1

    model = zoo.load(ml_run)
    images = [mosaics.parent / "images" / f"{i:05d}.png" for i in (260, 261, 262)]
    entries = json.loads(cli("predict", ml_run, *images, "--json").stdout)
    pixels = torch.stack([torch.from_numpy(decode_image(p, (32, 32), 3)) for p in images])
    probabilities = model.logits(pixels).sigmoid()
    answers = model.predict(pixels)
    for entry, p, answer in zip(entries, probabilities.tolist(), answers, strict=True):
        chosen = [c for c, q in zip(model.classes, p, strict=True) if q >= model.thresholds[c]]
        assert entry["labels"] == chosen == answer.labels
        assert {d["class"] for d in entry["predictions"]} == set(model.classes)
        shown = [d["probability"] for d in entry["predictions"]]
        assert shown == pytest.approx(sorted(p, reverse=True), abs=1e-5)
    rows = list(csv.reader(io.StringIO(cli("predict", ml_run, *images, "--csv").stdout)))
    assert rows[0] == ["path", "labels"]
    assert [r[1] for r in rows[1:]] == [" ".join(e["labels"]) for e in entries]

    onnx = tmp_path / "model.onnx"
    result = cli("export", ml_run, "--format", "onnx", "--out", onnx, "--input", "uint8")
    assert "probabilities, a sigmoid per class" in result.stdout
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx))
    (got,) = session.run(None, {"images": pixels.numpy()})
    assert np.allclose(got, probabilities.numpy(), atol=1e-5)

    cli("eval", ml_run)  # into the run: the card shows the evaluation
    cli("report", ml_run)
    page = (ml_run / "report.html").read_text()
    assert "mAP" in page and "precision-recall curves" in page
    card = (ml_run / "README.md").read_text()
    assert "- multi-label" in card and "| micro F1 |" in card
    assert "would upload" in cli("push", ml_run, "me/mosaics", "--dry-run").stdout


def test_a_prediction_csv_is_a_training_table(cli, ml_run: Path, mosaics: Path, tmp_path) -> None:
    images = sorted((mosaics.parent / "images").glob("*.png"))[:40]
    table = tmp_path / "predicted.csv"
    table.write_text(cli("predict", ml_run, *images, "--csv").stdout)
    assert any(row == "" for row in (line.split(",")[1] for line in table.read_text().splitlines()))
    out = tmp_path / "again"
    cli("train", "--data", table, "--image-size", "16", "--epochs", "1", "--out", out)
    config = read_toml(out / "config.toml")
    assert config["task"] == "multi-label"


def test_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score, f1_score, hamming_loss

    rng = np.random.default_rng(0)
    targets = (rng.random((200, 6)) < 0.3).astype(np.float64)
    targets[:, 5] = 0  # a class without positives: no AP, threshold 0.5
    probs = np.clip(targets * 0.4 + rng.random((200, 6)) * 0.6, 0, 1)
    ap = average_precision(probs, targets)
    for k in range(5):
        assert ap[k] == pytest.approx(average_precision_score(targets[:, k], probs[:, k]))
    assert ap[5] is None
    cuts = [0.3, 0.4, 0.5, 0.6, 0.7, 0.5]
    found = at_thresholds(probs, targets, cuts)
    predicted = probs >= np.array(cuts)
    assert found["f1_micro"] == pytest.approx(f1_score(targets, predicted, average="micro"))
    assert found["hamming"] == pytest.approx(hamming_loss(targets, predicted))
    assert found["exact"] == pytest.approx((predicted == targets).all(axis=1).mean())
    present = [k for k in range(6) if targets[:, k].any() or predicted[:, k].any()]
    macro = f1_score(targets, predicted, average="macro", labels=present, zero_division=0)
    assert found["f1_macro"] == pytest.approx(macro)

    def f1(k: int, cut: np.ndarray) -> np.ndarray:  # each cut's F1 for class k, at once
        predicted, truth = probs[:, k][None] >= cut[:, None], targets[:, k][None] > 0.5
        tp = (predicted & truth).sum(axis=1)
        return 2 * tp / (predicted.sum(axis=1) + truth.sum(axis=1))

    chosen = choose_thresholds(probs, targets)
    assert chosen[5] == 0.5
    for k in range(5):  # no cut does better on these images than the chosen one
        best = f1(k, np.unique(probs[:, k])).max()
        assert f1(k, np.array([chosen[k]]))[0] == pytest.approx(best)


def _table(folder: Path, rows: list[tuple[str, str]]) -> Path:
    from PIL import Image

    for name, _ in rows:
        Image.fromarray(np.full((8, 8), 30 * len(name), np.uint8)).save(folder / name)
    table = folder / "labels.csv"
    table.write_text("image,labels\n" + "".join(f"{n},{lab}\n" for n, lab in rows))
    return table


def test_bad_input_is_one_line(cli, tmp_path: Path, image_folder: Path) -> None:
    result = cli("train", "--data", image_folder, "--task", "multilabel", "--out", tmp_path / "a",
                 code=2)  # fmt: skip
    assert result.stderr.startswith("error: --task multilabel:")
    assert "use a table" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "a" / "config.toml").exists()

    rows = [(f"{i}.png", lab) for i, lab in enumerate(["a b", "b", "a", "a b", "b", "a"] * 2)]
    table = _table(tmp_path, rows)
    common = ["--data", table, "--image-size", "8", "--epochs", "1"]
    result = cli("train", *common, "--monitor", "val_accuracy", "--out", tmp_path / "b", code=2)
    assert "val_map" in result.stderr and "val_f1_micro" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    result = cli("train", *common, "--task", "single", "--out", tmp_path / "c", code=2)
    assert result.stderr.startswith("error: --task single:")
    result = cli("train", *common, "--task", "several", "--out", tmp_path / "d", code=2)
    assert result.stderr.startswith("error: --task 'several': not a task")
    cli("train", *common, "--threshold", "1.5", "--out", tmp_path / "e", code=2)
    cli("train", *common, "--balanced", "--out", tmp_path / "f", code=2)


def test_a_class_never_in_training_is_named_and_delimiters_are_the_declared_one(
    cli, tmp_path: Path
) -> None:
    rows = [("0.png", "cat dog"), ("1.png", "dog"), ("2.png", "cat"), ("3.png", "cat,bird")]
    table = _table(tmp_path, rows)
    text = table.read_text().replace("\n", ",train\n").replace("labels,train", "labels,split")
    table.write_text(text.replace("3.png,cat,bird,train", '3.png,"cat,bird",val'))
    result = cli("train", "--data", table, "--image-size", "8", "--epochs", "1", "--out",
                 tmp_path / "run")  # fmt: skip
    assert "never appear in the training split: cat,bird" in result.stdout
    assert zoo.load(tmp_path / "run").classes == ["cat", "cat,bird", "dog"]


def test_the_default_threshold_applies_to_every_class(cli, mosaics: Path, tmp_path) -> None:
    out = tmp_path / "run"
    options = ["--threshold", "0.3", "--loss", "asl", "--class-weights", "auto", "--aug", "mixup"]
    cli("train", "--data", mosaics, "--image-size", "8", "--epochs", "1", *options, "--out", out)
    assert set(zoo.load(out).thresholds.values()) == {0.3}
    assert read_toml(out / "config.toml")["loss"] == "timm:asl"


def test_single_label_runs_record_no_task(small_run: Path) -> None:
    from zoo.models.weights import read_header

    assert "task" not in (small_run / "config.toml").read_text()
    info = read_header(small_run / "model.safetensors").info
    assert info.thresholds is None and "task" not in info.config
    assert "thresholds" not in json.dumps(info.to_json())
    assert "problem_type" not in (small_run / "config.json").read_text()


@pytest.mark.cpu_kernels
def test_a_streamed_table_trains_and_evaluates_as_the_same_table_held(
    cli, mosaics: Path, tmp_path: Path
) -> None:
    # max_memory_mb=0: the decoded images exceed it, so the splits stream from the cache and
    # their label sets reach the task as padded [B, M] batches (of varying M) instead of rows
    # of a [N, K] matrix; the same seed orders both the same, so the metrics are the same.
    # Without dropout: creating the loader's iterator draws from torch's global generator,
    # which shifts a streamed run's dropout masks against a held run's.
    arch = "simplecnn:dropout=0"
    common = ["--image-size", "16", "--epochs", "1", "--arch", arch, "--seed", "3"]
    streamed_data = f"table:{mosaics}:max_memory_mb=0,workers=0"
    runs = {}
    for name, data in (("held", mosaics), ("streamed", streamed_data)):
        runs[name] = tmp_path / name
        cli("train", "--data", data, *common, "--out", runs[name])
        cli("eval", runs[name], "--split", "val", "--out", tmp_path / f"{name}-eval")
    held, streamed = (_records(runs[n])[-1] for n in ("held", "streamed"))
    assert "decoded_images" in streamed and "decoded_images" not in held  # it did stream
    for key in ("val_loss", "val_map", "val_f1_micro", "val_f1_macro", "val_exact"):
        assert 0 <= streamed[key] <= (1 if key != "val_loss" else 10), key
        assert streamed[key] == pytest.approx(held[key], abs=1e-6), key
    assert zoo.load(runs["streamed"]).thresholds == pytest.approx(zoo.load(runs["held"]).thresholds)
    reports = [json.loads((tmp_path / f"{n}-eval" / "eval.json").read_text()) for n in runs]
    assert reports[0]["count"] == reports[1]["count"] == 60
    assert reports[1]["map"] == pytest.approx(reports[0]["map"], abs=1e-6)
