"""Output that cannot be written (``> /dev/full``, a pipe closed early) is one error line and
exit code 1 for every command, never a traceback (zoo.cli.common.command)."""

from __future__ import annotations

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
    ],
    ids=["list", "eval", "predict-csv"],
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
