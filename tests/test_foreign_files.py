"""zoo never writes through a link in a run directory and never replaces a file it did not
write: a planted ``.zoo.lock`` link, a symlinked ``checkpoints/``, a folder of the user's own
files given as ``--out``, a user's ``lr_find.png`` or ``eval.json``. Each case is refused in one
line (exit code 2) before anything is written, and the files outside stay byte for byte."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from zoo.train.rundir import check_out

FAST = ["--image-size", "8", "--batch-size", "128", "--epochs", "1"]
PRECIOUS = b"the user's own file, which no zoo command may change\n"


def precious(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PRECIOUS)
    return path


def one_line(result) -> str:
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


@pytest.mark.parametrize("resume", [False, True], ids=["new-run", "resume"])
def test_a_planted_lock_link_is_refused_and_its_target_untouched(
    cli, tmp_path: Path, small_run: Path, resume: bool
) -> None:
    important = precious(tmp_path / "home" / "important")
    run = tmp_path / "run"
    if resume:
        shutil.copytree(small_run, run)
    else:
        run.mkdir()
    (run / ".zoo.lock").symlink_to(important)
    args = ["--resume", run, "--epochs", "2"] if resume else ["--out", run, *FAST]
    result = cli("train", *args, code=2)
    assert f"{run / '.zoo.lock'} is a symbolic link" in one_line(result)
    assert important.read_bytes() == PRECIOUS
    assert (run / ".zoo.lock").is_symlink()  # the link is the user's to remove
    # A dangling link to a file that does not exist yet: it is never created.
    (run / ".zoo.lock").unlink()
    (run / ".zoo.lock").symlink_to(tmp_path / "home" / "new-file")
    cli("train", *args, code=2)
    assert not (tmp_path / "home" / "new-file").exists()


def test_a_hard_linked_lock_is_refused(cli, tmp_path: Path) -> None:
    important = precious(tmp_path / "important")
    run = tmp_path / "run"
    run.mkdir()
    os.link(important, run / ".zoo.lock")
    result = cli("train", "--out", run, *FAST, code=2)
    assert "has other hard links" in one_line(result)
    assert important.read_bytes() == PRECIOUS


def test_symlinked_directories_and_files_of_a_run_are_refused(cli, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    keep = precious(elsewhere / "keep")
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    result = cli("train", "--out", run, *FAST, code=2)
    assert f"{run / 'checkpoints'} is a symbolic link" in one_line(result)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep"]
    # --overwrite replaces zoo's files; it never follows or removes a link either.
    cli("train", "--out", run, "--overwrite", *FAST, code=2)
    assert (run / "checkpoints").is_symlink() and keep.read_bytes() == PRECIOUS
    (run / "checkpoints").unlink()
    (run / "model.safetensors").symlink_to(keep)
    cli("train", "--out", run, "--overwrite", *FAST, code=2)
    assert keep.read_bytes() == PRECIOUS


def test_a_folder_of_someone_elses_files_is_not_an_out(cli, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    for name in ("config.json", "metrics.csv", "summary.json"):
        precious(mine / name)
    result = cli("train", "--out", mine, *FAST, code=2)
    message = one_line(result)
    assert f"--out {mine} is not empty and is not a zoo run" in message
    assert "config.json, metrics.csv, summary.json" in message and "--overwrite" in message
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "metrics.csv", "summary.json"]
    assert all(p.read_bytes() == PRECIOUS for p in mine.iterdir())
    # A hand-written config.toml alone is not a previous run either.
    hand = tmp_path / "hand"
    precious(hand / "config.toml")
    message = one_line(cli("train", "--out", hand, *FAST, code=2))
    assert "is not a zoo run" in message and "previous run" not in message
    # A folder a killed run left with only its lock (or zoo's temporary files) takes a run.
    left = tmp_path / "left"
    left.mkdir()
    (left / ".zoo.lock").write_text("{}\n")
    (left / ".config.toml.ab12cd34.tmp").write_text("")
    check_out(left, overwrite=False)
    # Asked for, --overwrite writes the run there.
    cli("train", "--out", mine, "--overwrite", *FAST)
    assert (mine / "model.safetensors").is_file()


def test_lr_find_never_replaces_a_plot_it_did_not_draw(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    theirs = precious(tmp_path / "lr_find.png")
    args = ["lr-find", "--image-size", "8", "--batch-size", "32", "--steps", "5"]
    result = cli(*args, code=2)
    assert "lr_find.png exists and zoo did not draw it" in one_line(result)
    assert theirs.read_bytes() == PRECIOUS
    drawn = tmp_path / "plots"
    drawn.mkdir()
    cli(*args, "--out", drawn)
    first = (drawn / "lr_find.png").read_bytes()
    cli(*args, "--out", drawn)  # zoo's own plot is redrawn
    assert (drawn / "lr_find.png").read_bytes() != PRECIOUS and first


def test_eval_out_never_replaces_files_it_did_not_write(cli, small_run: Path, tmp_path) -> None:
    out = tmp_path / "results"
    theirs = precious(out / "eval.json")
    plot = precious(out / "calibration.png")
    result = cli("eval", small_run, "--out", out, code=2)
    assert f"--out {out} holds" in one_line(result) and "zoo eval did not write" in result.stderr
    assert theirs.read_bytes() == PRECIOUS and plot.read_bytes() == PRECIOUS
    # A bare weights file's folder is the default place: the same rule holds there.
    loose = tmp_path / "downloads"
    shutil.copy(small_run / "model.safetensors", precious(loose / "confusion_matrix.png").parent)
    result = cli("eval", loose / "model.safetensors", code=2)
    assert "the weights' folder" in one_line(result)
    assert (loose / "confusion_matrix.png").read_bytes() == PRECIOUS
    # What an earlier zoo eval wrote there is zoo's to replace.
    fresh = tmp_path / "fresh"
    cli("eval", small_run, "--out", fresh, "--no-plots")
    cli("eval", small_run, "--out", fresh)
    assert json.loads((fresh / "eval.json").read_text())["pictures"]


def test_report_never_replaces_a_page_it_did_not_write(cli, evaluated_run, tmp_path) -> None:
    theirs = precious(tmp_path / "page.html")
    result = cli("report", evaluated_run, "--out", theirs, code=2)
    assert f"{theirs} exists and zoo did not write it" in one_line(result)
    assert theirs.read_bytes() == PRECIOUS
    ours = tmp_path / "ours.html"
    cli("report", evaluated_run, "--out", ours)
    cli("report", evaluated_run, "--out", ours)  # zoo's own page is written again
    assert ours.read_text().startswith("<!DOCTYPE html>")
