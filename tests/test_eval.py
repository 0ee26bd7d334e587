"""``zoo eval``: its numbers against scikit-learn's, the rebuilt validation split, the report
files and plots, other data, and refused input (including tampered weights)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_digit_folder
from sklearn import metrics as skm

import zoo
from zoo.builtins.loaders import load_digits

LABELS = list(range(10))
PNG = b"\x89PNG\r\n\x1a\n"


def eval_json(cli, *args: object) -> dict:
    return json.loads(cli("eval", *args, "--json").stdout)


def assert_averages_equal_scikit_learn(report: dict, y_true: object, y_pred: object) -> None:
    """Macro and weighted averages as scikit-learn computes them by default."""
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, average=average, zero_division=0
        )
        assert [report[average][k] for k in ("precision", "recall", "f1")] == pytest.approx(
            [p, r, f], abs=1e-12
        )


@pytest.mark.cpu_kernels
def test_eval_numbers_equal_scikit_learn(cli, small_run: Path, tmp_path: Path) -> None:
    report = eval_json(cli, small_run, "--samples", "--out", tmp_path)

    # The run's validation split, rebuilt here independently, run through the Python API.
    val = load_digits((8, 8), seed=0, val_fraction=0.2).val
    model = zoo.load(small_run, precision="auto")  # zoo eval's default, as training's
    with torch.no_grad():
        logits = model(model.preprocess(val.images)).float().numpy()
    y_true, y_pred = val.labels.numpy(), logits.argmax(axis=1)
    assert report["samples"]["targets"] == y_true.tolist()
    assert report["samples"]["predictions"] == y_pred.tolist()
    assert 0.2 < report["accuracy"] < 0.95  # imperfect: the comparisons below are not trivial

    assert report["count"] == len(y_true) == 359
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert report["top5_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(y_true, logits, k=5, labels=LABELS), abs=1e-12
    )
    cm = skm.confusion_matrix(y_true, y_pred, labels=LABELS)
    assert report["confusion_matrix"] == cm.tolist()
    assert_averages_equal_scikit_learn(report, y_true, y_pred)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, average=None, zero_division=0
    )
    per_class = report["per_class"]
    assert [c["class"] for c in per_class] == [str(d) for d in LABELS]
    assert [c["precision"] for c in per_class] == pytest.approx(p.tolist(), abs=1e-12)
    assert [c["recall"] for c in per_class] == pytest.approx(r.tolist(), abs=1e-12)
    assert [c["f1"] for c in per_class] == pytest.approx(f.tolist(), abs=1e-12)
    assert [c["support"] for c in per_class] == s.tolist()
    assert min(f) < max(f) < 1  # classes differ, none is perfect
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), val.labels).item()
    assert report["loss"] == pytest.approx(loss, rel=1e-6)


@pytest.mark.cpu_kernels
def test_eval_reproduces_the_validation_of_the_end_of_training(cli, small_run, tmp_path) -> None:
    report = eval_json(cli, small_run, "--out", tmp_path)
    last = json.loads((small_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert report["accuracy"] == pytest.approx(last["val_accuracy"], abs=1e-12)
    assert report["macro"]["f1"] == pytest.approx(last["val_f1"], abs=1e-12)
    assert report["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    # the run records the qualified name of its dataset
    assert (report["data"], report["split"], report["epoch"]) == ("zoo:digits", "val", 1)


def test_eval_writes_its_report_and_plots_next_to_the_run(cli, small_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    result = cli("eval", run)
    for text in ("precision", "recall", "macro avg", "weighted avg", "accuracy", "top-5"):
        assert text in result.stdout
    saved = json.loads((run / "eval.json").read_text())
    assert saved["accuracy"] > 0 and len(saved["confusion_matrix"]) == 10
    assert "samples" not in saved
    for name in ("confusion_matrix.png", "training_curves.png"):
        assert (run / name).read_bytes().startswith(PNG), name
        assert name in result.stdout


def test_a_bare_weights_file_reports_into_out(cli, small_run, tmp_path) -> None:
    weights = tmp_path / "w" / "digits.safetensors"
    weights.parent.mkdir()
    shutil.copy(small_run / "model.safetensors", weights)
    cli("eval", weights, "--out", tmp_path / "reports", "--split", "train")
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "calibration.png",
        "confusion_matrix.png",
        "eval.json",
        "top_losses.png",
    ]  # no metrics.jsonl beside the file: no training curves
    assert json.loads((tmp_path / "reports" / "eval.json").read_text())["count"] == 1438
    assert sorted(p.name for p in weights.parent.iterdir()) == ["digits.safetensors"]


def test_without_matplotlib_the_metrics_still_print(cli, small_run, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    result = cli("eval", small_run, "--out", tmp_path)
    assert "matplotlib is not installed" in result.stdout and "macro avg" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]


def test_eval_on_a_folder_with_some_of_the_classes(cli, small_run, tmp_path) -> None:
    folder = write_digit_folder(tmp_path / "scans", [3, 7], per_class=6)
    # A path: the folder dataset, decoded greyscale at the model's 8x8 (the model has 1 channel).
    args = ["--data", folder, "--split", "all", "--out", tmp_path, "--samples"]
    report = eval_json(cli, small_run, *args)
    cm = np.array(report["confusion_matrix"])
    assert report["count"] == 12 and cm.shape == (10, 10)
    assert cm.sum(axis=1).tolist() == [0, 0, 0, 6, 0, 0, 0, 6, 0, 0]  # rows in the model's order
    assert report["per_class"][3]["support"] == 6
    y_true, y_pred = report["samples"]["targets"], report["samples"]["predictions"]
    assert sorted(set(y_true)) == [3, 7]
    # Macro averages skip the classes neither in the data nor predicted, as scikit-learn's.
    assert report["macro"]["classes"] == len(set(y_true) | set(y_pred)) < 10
    assert_averages_equal_scikit_learn(report, y_true, y_pred)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert "macro averages over the" in cli("eval", small_run, *args[:-1]).stdout


def test_eval_refuses_data_whose_classes_the_model_lacks(cli, small_run, image_folder) -> None:
    result = cli("eval", small_run, "--data", image_folder, code=2)
    assert "classes the model does not know: cats, dogs, owls" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "tests"], "--split must be one of val, test, train, all"),
        (["--split", "test"], "zoo:digits has no test split; use --split val, train or all"),
        (["--data", "nosuchdataset"], "unknown dataset 'nosuchdataset'"),
        (["--precision", "fp8"], "--precision must be"),
    ],
)
def test_eval_bad_options_fail_in_one_line(cli, small_run, args, message) -> None:
    result = cli("eval", small_run, *args, code=2)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_of_a_path_that_is_not_a_run(cli, tmp_path) -> None:
    result = cli("eval", tmp_path, code=2)
    assert "holds no model.safetensors" in result.stderr


def test_data_without_a_validation_split_says_which_split_to_use(cli, small_run, tmp_path):
    folder = write_digit_folder(tmp_path / "scans", [1, 2], per_class=1)  # nothing held out
    result = cli("eval", small_run, "--data", folder, "--split", "val", code=2)
    assert "has no val split (no images were held out); use --split train or all" in result.stderr
    assert (
        eval_json(cli, small_run, "--data", folder, "--split", "train", "--out", tmp_path)["count"]
        == 2
    )


def test_a_test_folder_is_evaluated_whole(cli, small_run, tmp_path):
    # A folder of class folders without train/ or val/ given to eval is a test set: all of it,
    # not the 20% a training run would have held out of it.
    folder = write_digit_folder(tmp_path / "test", [3, 7], per_class=10)
    report = eval_json(cli, small_run, "--data", folder, "--out", tmp_path)
    assert (report["split"], report["count"]) == ("all", 20)
    # A folder with its own splits still defaults to its validation split.
    split = write_digit_folder(tmp_path / "split" / "val", [3], per_class=4)
    write_digit_folder(tmp_path / "split" / "train", [3, 7], per_class=2)
    report = eval_json(cli, small_run, "--data", split.parent, "--out", tmp_path)
    assert (report["split"], report["count"]) == ("val", 4)
