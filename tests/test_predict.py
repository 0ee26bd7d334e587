"""``zoo predict``: order, batching, output formats and unreadable files."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.builtins.loaders import digits_arrays
from zoo.data.decoder import decode_image


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    """Digit scans as image files: two in a nested folder, one JPEG in colour at another size,
    a text file and a truncated PNG."""
    pixels, _ = digits_arrays()
    root = tmp_path / "scans"
    (root / "b" / "deep").mkdir(parents=True)
    Image.fromarray(pixels[0, 0]).save(root / "b" / "deep" / "z.png")
    Image.fromarray(pixels[1, 0]).save(root / "b" / "a.png")
    Image.fromarray(pixels[2, 0]).resize((24, 24)).convert("RGB").save(root / "c.jpg")
    (root / "b" / "notes.md").write_text("not an image, and not picked from a folder")
    (tmp_path / "notes.txt").write_text("not an image")
    good = io.BytesIO()
    Image.fromarray(pixels[3, 0]).save(good, format="PNG")
    (tmp_path / "broken.png").write_bytes(good.getvalue()[:40])
    return root


def expected_top(
    run: Path, files: list[Path], k: int, precision: str = "auto"
) -> list[list[tuple[str, float]]]:
    model = zoo.load(run, precision=precision)  # zoo predict's default precision: auto
    images = np.stack([decode_image(f, model.image_size, 1) for f in files])
    return model.predict(torch.from_numpy(images), top_k=k)


def test_predict_keeps_the_order_given_and_reports_bad_files(cli, small_run, scans) -> None:
    tmp = scans.parent
    args = [scans / "c.jpg", tmp / "notes.txt", scans / "b", tmp / "broken.png"]
    result = cli("predict", small_run, *args, "--json", "--top-k", "3", code=1)
    entries = json.loads(result.stdout)
    order = [scans / "c.jpg", tmp / "notes.txt", scans / "b" / "a.png"]
    order += [scans / "b" / "deep" / "z.png", tmp / "broken.png"]
    assert [e["path"] for e in entries] == [str(p) for p in order]
    failed = {e["path"]: e["error"] for e in entries if e["error"]}
    assert set(failed) == {str(tmp / "notes.txt"), str(tmp / "broken.png")}
    assert all("not a readable image" in reason for reason in failed.values())
    good = [p for p in order if str(p) not in failed]
    expected = expected_top(small_run, good, 3)
    got = [[(p["class"], p["probability"]) for p in e["predictions"]] for e in entries]
    got = [top for top, e in zip(got, entries, strict=True) if not e["error"]]
    assert got == expected
    assert all(e["predictions"] == [] for e in entries if e["error"])
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"warning: {tmp / 'notes.txt'}: not a readable image")
    assert lines[1].startswith(f"warning: {tmp / 'broken.png'}: not a readable image")
    assert lines[2] == "error: 2 of 5 files could not be read"


@pytest.mark.cpu_kernels
def test_precision_auto_follows_training_and_fp32_is_exact(cli, small_run, scans) -> None:
    from zoo.device.precision import resolve_precision

    files = [scans / "b" / "a.png", scans / "b" / "deep" / "z.png", scans / "c.jpg"]
    exact = json.loads(cli("predict", small_run, *files, "--json", "--precision", "fp32").stdout)
    auto = json.loads(cli("predict", small_run, *files, "--json").stdout)
    assert [[(p["class"], p["probability"]) for p in e["predictions"]] for e in exact] == (
        expected_top(small_run, files, 5, precision="fp32")
    )
    model = zoo.load(small_run, precision="auto")
    assert model.amp_dtype == resolve_precision("auto", torch.device("cpu"), model.net)
    for a, e in zip(auto, exact, strict=True):  # bf16 where this CPU has AMX: close, not equal
        assert a["predictions"][0]["class"] == e["predictions"][0]["class"]
        for p, q in zip(a["predictions"], e["predictions"], strict=True):
            assert abs(p["probability"] - q["probability"]) < 0.01
    result = cli("predict", small_run, *files, "--precision", "fp8", code=2)
    assert result.stderr.startswith("error: --precision must be one of")


@pytest.mark.cpu_kernels
def test_batch_size_does_not_change_predictions(cli, small_run, scans) -> None:
    one = json.loads(cli("predict", small_run, scans, "--json", "--batch-size", "1").stdout)
    many = json.loads(cli("predict", small_run, scans, "--json", "--batch-size", "64").stdout)
    assert [e["path"] for e in one] == [e["path"] for e in many]
    for a, b in zip(one, many, strict=True):
        assert [p["class"] for p in a["predictions"]] == [p["class"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx(
            [p["probability"] for p in b["predictions"]], abs=1e-5
        )


def test_predict_csv_has_one_row_per_file(cli, small_run, scans) -> None:
    notes = scans.parent / "notes.txt"
    result = cli("predict", small_run, scans / "b", notes, "--csv", "-k", "2", code=1)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["path", "class_1", "probability_1", "class_2", "probability_2", "error"]
    assert [r[0] for r in rows[1:]] == [
        str(scans / "b" / "a.png"),
        str(scans / "b" / "deep" / "z.png"),
        str(notes),
    ]
    (c1, p1), (c2, p2) = expected_top(small_run, [scans / "b" / "a.png"], 2)[0]
    assert rows[1][1:5] == [c1, str(p1), c2, str(p2)]
    assert rows[1][5] == "" and rows[3][1:5] == ["", "", "", ""]
    assert "not a readable image" in rows[3][5]


def test_predict_table_and_top_k_beyond_the_classes(cli, small_run, scans) -> None:
    result = cli("predict", small_run, scans / "c.jpg", "--top-k", "50")
    assert str(scans / "c.jpg") in result.stdout and "probability" in result.stdout
    entries = json.loads(cli("predict", small_run, scans / "c.jpg", "--json", "-k", "50").stdout)
    probabilities = [p["probability"] for p in entries[0]["predictions"]]
    assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1, abs=1e-4)
    assert probabilities == sorted(probabilities, reverse=True)


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: [tmp / "missing.png"], "missing.png does not exist"),
        (lambda tmp: [tmp / "empty"], "holds no image files"),
        (lambda tmp: [tmp / "empty", "--json", "--csv"], "choose one of --json and --csv"),
    ],
    ids=["missing", "no-images", "two-formats"],
)
def test_predict_bad_input_fails_before_predicting(cli, small_run, tmp_path, make_args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    result = cli("predict", small_run, *make_args(tmp_path), code=2)
    assert result.stdout == "" and message in result.stderr


def test_exif_orientation_is_applied_as_photo_viewers_do(cli, small_run, tmp_path) -> None:
    # A camera stores its pixels sideways and an EXIF tag saying how to turn them upright;
    # training, eval and prediction all decode through decode_image, which turns them.
    upright = np.random.default_rng(0).integers(0, 255, (14, 10), dtype=np.uint8)
    Image.fromarray(upright).save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(np.rot90(upright)).save(tmp_path / "sideways.png", exif=exif)
    for size in [(14, 10), (8, 8)]:
        assert np.array_equal(
            decode_image(tmp_path / "sideways.png", size, 1),
            decode_image(tmp_path / "upright.png", size, 1),
        )
    rows = json.loads(cli("predict", small_run, tmp_path, "--json").stdout)
    assert rows[0]["predictions"] == rows[1]["predictions"]


def test_a_decompression_bomb_warning_names_the_file(cli, small_run, tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((14, 10), dtype=np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 140 pixels: over, not twice over
    result = cli("predict", small_run, path)
    assert result.stderr == (
        f"warning: {path} is 10x14 (140 pixels), over PIL's decompression-bomb limit of 100: "
        "a huge image, or a file made to exhaust memory; decoding it\n"
    )


def test_fifos_and_dangling_links_are_error_entries_not_hangs(cli, small_run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(digits_arrays()[0][0, 0]).save(folder / "a.png")
    os.mkfifo(folder / "b.png")  # opening it for reading would wait for a writer forever
    (folder / "c.png").symlink_to(tmp_path / "deleted.png")
    result = cli("predict", small_run, folder, folder / "c.png", "--json", code=1)
    rows = json.loads(result.stdout)
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.png", "c.png", "c.png"]
    assert rows[0]["error"] is None
    assert "a FIFO, not a regular file" in rows[1]["error"]
    assert "a dangling symbolic link" in rows[2]["error"] == rows[3]["error"]
    assert result.stderr.splitlines()[-1] == "error: 3 of 4 files could not be read"


@pytest.mark.cpu_kernels
def test_prefetched_batches_keep_the_order_and_equal_the_serial_path(small_run, tmp_path) -> None:
    from zoo.labeling.outputs import output_for
    from zoo.tasks.prediction import predict_files

    pixels, _ = digits_arrays()
    files = []
    for i in range(23):  # six batches of 4, decoded two batches ahead of the model
        files.append(tmp_path / f"{i:02d}.png")
        Image.fromarray(pixels[i, 0]).save(files[-1])
    files.insert(5, tmp_path / "missing.png")
    model = zoo.load(small_run)
    output = output_for(model.info, top_k=3)
    streamed = list(predict_files(model, files, output=output, batch_size=4, workers=3))
    serial = list(predict_files(model, files, output=output, batch_size=4, workers=1))  # no pool
    assert [p.path for p in streamed] == files == [p.path for p in serial]
    assert [p.answer for p in streamed] == [p.answer for p in serial]
    assert [p.error is not None for p in streamed] == [f.name == "missing.png" for f in files]


class Thresholds:
    """A second task's output, as a multi-label run would give it: the labels over a
    threshold and every class's probability."""

    task = "toy-multi-label"

    def __init__(self, classes: list[str], top_k: int = 5, tta: str | None = None) -> None:
        self.classes, self.tta = classes, tta

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def answers(self, probabilities: torch.Tensor) -> list[dict[str, float]]:
        return [dict(zip(self.classes, row, strict=True)) for row in probabilities.tolist()]

    def record(self, prediction) -> dict:
        scores = prediction.answer or {}
        labels = [c for c, p in scores.items() if p > 0.5]
        return {"path": str(prediction.path), "labels": labels, "probabilities": scores}

    def csv_header(self) -> list[str]:
        return ["path", *self.classes]

    def csv_row(self, prediction) -> list[str]:
        return [str(prediction.path), *(str(v) for v in (prediction.answer or {}).values())]

    def table_columns(self) -> list[tuple[str, str]]:
        return [("file", "left"), ("labels", "left")]

    def table_row(self, prediction) -> list[str]:
        return [str(prediction.path), " ".join(self.record(prediction)["labels"])]


def test_the_output_is_the_runs_tasks(cli, small_run, scans, tmp_path, monkeypatch) -> None:
    from zoo.labeling import outputs
    from zoo.models.weights import load_tensors, read_header, save

    header = read_header(small_run / "model.safetensors")
    header.info.config["task"] = "toy-multi-label"
    weights = tmp_path / "toy.safetensors"
    save(weights, load_tensors(small_run / "model.safetensors"), header.info)
    image = scans / "b" / "a.png"
    result = cli("predict", weights, image, "--json", code=2)
    assert result.stderr.startswith("error: this zoo cannot predict with a 'toy-multi-label'")

    toy = lambda info, top_k, tta: Thresholds(list(info.classes), top_k, tta)  # noqa: E731
    monkeypatch.setitem(outputs.OUTPUTS, "toy-multi-label", toy)
    (entry,) = json.loads(cli("predict", weights, image, "--json").stdout)
    logits = zoo.load(weights, precision="auto").logits(
        torch.from_numpy(decode_image(image, (8, 8), 1))[None]
    )
    expected = dict(zip(header.info.classes, logits.sigmoid()[0].tolist(), strict=True))
    assert entry == {
        "path": str(image),
        "labels": [c for c, p in expected.items() if p > 0.5],
        "probabilities": expected,
    }
    rows = list(csv.reader(io.StringIO(cli("predict", weights, image, "--csv").stdout)))
    assert rows[0] == ["path", *header.info.classes] and len(rows) == 2
