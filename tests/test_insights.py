"""``zoo eval``'s look at what the model gets wrong: top losses (by index for built-in data, by
file for folders), Grad-CAM maps and their layer, calibration, and test-time augmentation in
``zoo eval`` and ``zoo predict``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_digit_folder
from PIL import Image

import zoo
from zoo.builtins.loaders import digits_arrays, load_digits
from zoo.data.decoder import decode_image
from zoo.errors import ZooError
from zoo.tasks.insights import calibration

PNG = b"\x89PNG\r\n\x1a\n"
PICTURES = ("confusion_matrix.png", "training_curves.png", "calibration.png", "top_losses.png")


def test_top_losses_cam_and_tta_on_the_digits(evaluated_run: Path) -> None:
    run = evaluated_run  # zoo eval RUN --top-losses 8 --cam --tta-mode flip
    stdout = (run / "eval.stdout").read_text()
    report = json.loads((run / "eval.json").read_text())
    assert report["pictures"] == list(PICTURES)
    for name in PICTURES:
        assert (run / name).read_bytes().startswith(PNG), name
        assert str(run / name) in stdout
    grid = np.asarray(Image.open(run / "top_losses.png").convert("L"))
    assert grid.std() > 10  # pictures, not a blank canvas

    # The validation split rebuilt independently, run through the Python API.
    val = load_digits((8, 8), seed=0, val_fraction=0.2).val
    model = zoo.load(run)
    with torch.no_grad():
        logits = model(model.preprocess(val.images))
        mirrored = model(model.preprocess(val.images.flip(-1)))
    probs = logits.softmax(dim=1)
    losses = torch.nn.functional.cross_entropy(logits, val.labels, reduction="none")
    wrong = set((probs.argmax(dim=1) != val.labels).nonzero().flatten().tolist())
    assert len(wrong) > 8  # the one-epoch model is imperfect: the list is a real choice

    entries = report["top_losses"]
    assert len(entries) == 8
    for entry in entries:
        i = entry["index"]
        assert i in wrong and "path" not in entry  # built-in data: named by index
        assert entry["true"] == str(int(val.labels[i]))
        assert entry["predicted"] == str(int(probs[i].argmax())) != entry["true"]
        assert entry["probability"] == pytest.approx(float(probs[i].max()), abs=1e-5)
        assert entry["loss"] == pytest.approx(float(losses[i]), abs=1e-4)
    shown = [losses[e["index"]].item() for e in entries]
    assert shown == sorted(shown, reverse=True)
    others = [losses[i].item() for i in wrong - {e["index"] for e in entries}]
    assert min(shown) >= max(others) - 1e-5  # the highest losses among the wrong ones
    assert report["cam"] == {"method": "Grad-CAM", "layer": "features.7"}

    averaged = (probs + mirrored.softmax(dim=1)) / 2
    tta = report["tta"]
    assert (tta["mode"], tta["views"]) == ("flip", 2)
    assert tta["accuracy"] == pytest.approx((averaged.argmax(1) == val.labels).double().mean())
    assert tta["accuracy"] != report["accuracy"]  # digits are not mirror-symmetric
    assert f"with TTA (flip, 2 views): accuracy {tta['accuracy']:.4f}" in stdout
    assert f"accuracy {report['accuracy']:.4f}" in stdout
    assert 0 < report["calibration"]["ece"] < 1 and "calibration error (ECE)" in stdout


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_top_losses_of_a_folder_are_files_the_model_gets_wrong(
    cli, small_run, tmp_path, streamed
) -> None:
    folder = write_digit_folder(tmp_path / "scans", [3, 7, 8], per_class=5)
    # Streamed: items read one by one from the decoded cache, not held in memory.
    data = f"folder:root={folder},max_memory_mb=0.00001" if streamed else str(folder)
    out = tmp_path / "out"
    args = ["--data", data, "--split", "all", "--top-losses", "4", "--out", out, "--json"]
    args += ["--workers", "0"]
    report = json.loads(cli("eval", small_run, *args).stdout)
    entries = report["top_losses"]
    assert len(entries) == 4 and report["count"] == 15
    model = zoo.load(small_run)
    for entry in entries:
        path = Path(entry["path"])
        assert path.is_file() and path.parent.name == entry["true"]
        pixels = torch.from_numpy(decode_image(path, model.image_size, 1)[None])
        (predicted, p), *_ = model.predict(pixels, top_k=1)[0]
        assert predicted == entry["predicted"] != entry["true"]
        assert p == pytest.approx(entry["probability"], abs=1e-5)
    assert (out / "top_losses.png").read_bytes().startswith(PNG)


def test_calibration_error_matches_a_hand_computation() -> None:
    # Two classes; logits are log-probabilities, so the softmax gives these probabilities back.
    probs = [[0.95, 0.05], [0.85, 0.15], [0.3, 0.7], [0.55, 0.45], [0.62, 0.38], [0.64, 0.36]]
    targets = [0, 1, 1, 1, 0, 1]
    result = calibration(torch.tensor(probs).log(), torch.tensor(targets))
    # Top-1 confidences 0.95 (right), 0.85 (wrong), 0.7 (right), 0.55 (wrong), and 0.62 (right)
    # with 0.64 (wrong) sharing the bin (0.6, 0.667]: accuracy 0.5 at mean confidence 0.63.
    gaps = [1 - 0.95, 0.85, 1 - 0.7, 0.55, 2 * abs(0.5 - 0.63)]
    assert result["ece"] == pytest.approx(sum(gaps) / 6, abs=1e-6)  # 0.335
    assert result["mce"] == pytest.approx(0.85, abs=1e-6)
    assert result["bins"] == 15 and sum(result["count"]) == 6
    assert result["count"][9] == 2 and result["accuracy"][9] == 0.5
    assert result["confidence"][9] == pytest.approx(0.63, abs=1e-6)
    assert result["accuracy"][0] is None  # an empty bin
    perfect = calibration(torch.tensor([[10.0, -10.0], [-10.0, 10.0]]), torch.tensor([0, 1]))
    assert perfect["ece"] == pytest.approx(0, abs=1e-6)


@pytest.mark.cpu_kernels
def test_flip_tta_of_a_symmetric_image_changes_nothing(cli, small_run, tmp_path) -> None:
    pixels, _ = digits_arrays()
    files = []
    for n in range(3):
        left = pixels[n, 0, :, :4]
        image = np.concatenate([left, left[:, ::-1]], axis=1)  # a mirror-symmetric 8x8 scan
        files.append(tmp_path / f"symmetric{n}.png")
        Image.fromarray(image).save(files[-1])
    files.append(tmp_path / "scan.png")
    Image.fromarray(pixels[3, 0]).save(files[-1])  # not symmetric
    found = json.loads(cli("predict", small_run, *files, "--tta-mode", "flip", "--json").stdout)

    def probabilities(predictions: list[dict]) -> list[float]:
        return [p["probability"] for p in predictions]

    for result in found[:3]:
        assert result["tta"] == "flip"
        assert [p["class"] for p in result["predictions"]] == [
            p["class"] for p in result["without_tta"]
        ]
        assert probabilities(result["predictions"]) == pytest.approx(
            probabilities(result["without_tta"]), abs=2e-6
        )
    last = found[3]
    assert probabilities(last["predictions"]) != probabilities(last["without_tta"])
    table = cli("predict", small_run, files[0], "--tta-mode", "flip+crops").stdout
    assert "without tta" in table


def test_the_cam_layer_is_the_last_convolutional_stage() -> None:
    import timm

    from zoo.builtins.nets import SimpleCNN
    from zoo.tasks.cam import activation_maps, find_target

    cases = [
        (SimpleCNN(10, 1, 8), 1, 8, "features.7"),  # 2x2 maps; the last pooling gives 1x1
        (timm.create_model("test_resnet", num_classes=3), 3, 64, "layer4"),
        (timm.create_model("test_resnet", num_classes=3), 3, 32, "layer3"),  # layer4 is 1x1
        (timm.create_model("test_convnext", num_classes=3), 3, 64, "stages.3"),
        # A vision transformer: its tokens laid back on their 2x2 patch grid.
        (timm.create_model("test_vit", num_classes=3, img_size=32), 3, 32, "blocks.5.norm1"),
    ]
    for net, channels, size, layer in cases:
        x = torch.randn(2, channels, size, size)
        target = find_target(net, x[:1])
        assert target.name == layer, type(net).__name__
        assert activation_maps(net, x, [0, 1], target).shape == (2, size, size)


class TokenNet(torch.nn.Module):
    """A transformer-like network: a patch stem, then token layers zoo cannot lay on a grid."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 4, 4)
        self.blocks = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 16))
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(tokens).mean(dim=1))


def test_a_network_without_a_convolutional_stage_gets_the_candidates() -> None:
    from zoo.tasks.cam import find_target

    with pytest.raises(ZooError, match=r"no convolutional stage .*--cam-layer NAME .*stem"):
        find_target(TokenNet(), torch.randn(1, 3, 16, 16))
    assert find_target(TokenNet(), torch.randn(1, 3, 16, 16), "stem").name == "stem"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cam", "--cam-layer", "featurs.7"], "did you mean features.7"),
        (["--cam", "--cam-layer", "classifier"], "gives [1, 10], not a spatial map"),
        (["--cam-layer", "features.7"], "--cam-layer chooses the layer of --cam; add --cam"),
        (["--cam", "--top-losses", "0"], "--cam maps the top-loss images"),
        (["--tta-mode", "flop"], "unknown TTA mode 'flop'; did you mean flip?"),
    ],
)
def test_bad_insight_options_fail_in_one_line(cli, small_run, tmp_path, args, message) -> None:
    result = cli("eval", small_run, "--out", tmp_path / "out", *args, code=2)
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cam_without_grad_cam_installed_says_how_to_get_it(cli, small_run, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # makes the import fail
    result = cli("eval", small_run, "--cam", code=2)
    assert "pip install 'zoo[explain]'" in result.stderr


def test_tta_takes_the_views_the_run_trained_with(cli, small_run, tmp_path) -> None:
    from zoo.errors import ZooError
    from zoo.tasks.tta import resolve_mode

    # The digits run trained without augmentation: no view is one it learned.
    scan = tmp_path / "scan.png"
    Image.fromarray(digits_arrays()[0][0, 0]).save(scan)
    for command in (
        ["eval", small_run, "--tta", "--no-plots"],
        ["predict", small_run, scan, "--tta"],
    ):
        refused = cli(*command, code=2)
        assert refused.stderr == (
            f"error: --tta: {small_run} trained without flips (hflip) or zooms (zoom), so every "
            "view of test-time augmentation is one it never learned; choose views with "
            "--tta-mode flip|crops|flip+crops\n"
        )
    # zoo 0.1's run trained with --aug hflip: mirror images are views it learned.
    old = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "data" / "run-zoo-0.1", old)
    report = json.loads(cli("eval", old, "--tta", "--json", "--no-plots").stdout)
    assert (report["tta"]["mode"], report["tta"]["views"]) == ("flip", 2)
    (predicted,) = json.loads(cli("predict", old, scan, "--tta", "--json").stdout)
    assert predicted["tta"] == "flip"  # zoo predict --tta takes the same views
    # Zooms make crops views it learned; an explicit mode wins; weights that do not say how
    # they were trained get flips, as ImageNet training uses.
    assert resolve_mode("auto", {"aug": ["zoom:amount=0.2", "rotate"]}, "r") == "crops"
    assert resolve_mode("auto", {"aug": ["zoo:hflip", "affine:zoom=0.1"]}, "r") == "flip+crops"
    with pytest.raises(ZooError, match="trained without flips"):
        resolve_mode("auto", {"aug": ["hflip:p=0", "affine:degrees=5"]}, "r")
    assert resolve_mode("crops", {"aug": []}, "r") == "crops"
    assert resolve_mode("auto", {}, "r") == "flip"
