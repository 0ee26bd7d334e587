"""Output that cannot be written (``> /dev/full``, a pipe closed early) is one error line and
exit code 1 for every command, never a traceback (zoo.cli.common.command)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from zoo.builtins.loaders import digits_arrays

FULL = "error: cannot write the output: No space left on device (standard output)\n"


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["eval", "RUN", "--no-plots", "--out", "TMP"],
        ["predict", "RUN", "IMAGE", "--csv"],
        [],  # zoo alone prints its help
        ["--help"],
        ["train", "--help"],
        ["runs", "--help"],
    ],
    ids=["list", "eval", "predict-csv", "zoo", "help", "train-help", "runs-help"],
)
def test_a_full_stdout_is_one_line_and_exit_1(small_run, tmp_path: Path, command) -> None:
    image = tmp_path / "digit.png"
    Image.fromarray(digits_arrays()[0][0, 0]).save(image)
    where = {"RUN": small_run, "IMAGE": image, "TMP": tmp_path}
    args = [str(where.get(a, a)) for a in command]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "zoo", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    assert (result.returncode, result.stderr) == (1, FULL)


def test_an_output_that_cannot_be_written_is_exit_1_for_every_command(
    cli, small_run, tmp_path: Path
) -> None:
    """One rule for write failures (docs/architecture.md): the input was fine, the command
    failed: exit code 1 and one line naming the file, whatever command wrote it."""
    from test_runs import fake_run

    for n in (1, 2):
        fake_run(tmp_path / "runs" / f"run-{n}", n)
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    where = tmp_path / "blocker" / "sub"
    commands = {
        "runs": ["runs", "compare", tmp_path / "runs" / "run-1", tmp_path / "runs" / "run-2"],
        "eval": ["eval", small_run, "--no-plots", "--top-losses", "0"],
        "report": ["report", tmp_path / "evaluated"],
        "lr-find": ["lr-find", "--steps", "5", "--image-size", "8"],
    }
    shutil.copytree(small_run, tmp_path / "evaluated")
    cli("eval", tmp_path / "evaluated", "--no-plots", "--top-losses", "0")
    targets = {"runs": where / "c.png", "eval": where, "report": where / "r.html"}
    targets["lr-find"] = where / "lr.png"
    for name, args in commands.items():
        result = cli(*args, "--out", targets[name], code=1)
        written = targets[name] / "eval.json" if name == "eval" else targets[name]
        assert result.stderr == (
            f"error: cannot write {written}: Not a directory; choose another place with --out"
            + (" DIR\n" if name == "eval" else " FILE\n" if name == "report" else "\n")
        ), name
