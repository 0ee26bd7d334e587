"""Hostile input is one ``error:`` line and the contract's exit code, never a traceback or a
hang: click's own usage errors, help that cannot be written, a TOML nested too deeply, a path
too long for the system or that loops, a FIFO where zoo reads a file, and values too long to
echo (zoo.cli.common, zoo.files.reading, zoo.errors.shown). Real processes where a hang or the
process's own output is the point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def zoo(*args: str | Path, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``zoo ARGS`` in its own process, with a limit that fails a hang instead of waiting."""
    return subprocess.run(
        [sys.executable, "-m", "zoo", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        **kwargs,
    )


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert "Traceback" not in stderr
    return stderr


def test_zoo_alone_prints_the_help_as_zoo_help_does() -> None:
    alone, helped = zoo(), zoo("--help")
    assert (alone.returncode, alone.stdout, alone.stderr) == (0, helped.stdout, "")
    assert alone.stdout.startswith("Usage: zoo [OPTIONS] COMMAND [ARGS]...")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["train", "--epochs", "abc"],
            "error: invalid value for '--epochs': Input should be a valid integer, unable to "
            "parse string as an integer (see zoo train -h)\n",
        ),
        (
            ["eval", "RUN", "--top-losses", "-5"],
            "error: invalid value for '--top-losses': Input should be greater than or equal to 0 "
            "(see zoo eval -h)\n",
        ),
        (
            ["train", "--epoch", "3"],
            "error: no such option --epoch; did you mean --epochs, --freeze-epochs, --nproc? "
            "(see zoo train -h)\n",
        ),
        (["eval"], "error: missing argument 'RUN_DIR_OR_WEIGHTS' (see zoo eval -h)\n"),
        (["runs", "compare"], "error: missing argument 'RUN' (see zoo runs compare -h)\n"),
        (["trian"], "error: no such command 'trian'; did you mean 'train'? (see zoo -h)\n"),
        (
            ["x" * 5000],
            f"error: no such command '{'x' * 200}\u2026' (5,000 characters) (see zoo -h)\n",
        ),
    ],
    ids=["type", "range", "unknown-option", "missing-argument", "subgroup", "command", "long"],
)
def test_usage_errors_are_one_line_and_exit_2(small_run: Path, args: list[str], line: str) -> None:
    result = zoo(*(small_run if a == "RUN" else a for a in args))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line)


def test_a_toml_nested_too_deeply_is_one_line(cli, tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("epochs = " + "[" * 5000 + "]" * 5000 + "\n")
    for command in ("train", "tune", "lr-find"):
        result = cli(command, "--config", deep, code=2)
        assert result.stderr == (
            f"error: config file {deep} is not valid TOML: nested too deeply to read\n"
        )


def test_a_path_too_long_or_looping_is_one_line_and_exit_2(cli, small_run, tmp_path) -> None:
    long = tmp_path / ("x" * 5000)  # over NAME_MAX (255) and PATH_MAX (4096)
    shown = f"{str(long)[:200]}\u2026 ({len(str(long)):,} characters)"
    cut = re.compile(re.escape(f"error: {str(long)[:200]}\u2026 (") + r"5,\d{3} characters\)")
    commands = [
        ["train", "--data", long],
        ["train", "--out", long, "--epochs", "1"],
        ["lr-find", "--data", long],
        ["eval", small_run, "--data", long],
        ["eval", long],
        ["report", long],
        ["predict", small_run, long],
        ["runs", long],
        ["train", "--init", long, "--epochs", "1"],
        ["train", "--resume", long],
    ]
    for args in commands:
        result = cli(*args, code=2)
        assert cut.match(one_line(result.stderr)), args
        assert result.stderr.endswith(" characters): File name too long\n"), args
    config = cli("train", "--config", long, code=2)
    assert config.stderr == f"error: cannot read config file {shown}: File name too long\n"

    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    for args in (["train", "--data", loop / "images"], ["train", "--config", loop]):
        assert "Too many levels of symbolic links" in one_line(cli(*args, code=2).stderr)


def test_a_fifo_where_a_file_is_read_is_refused_without_waiting(small_run, tmp_path) -> None:
    """Opening a FIFO for reading waits for a writer forever: a config, a run's record or a
    weights file that is a FIFO is refused in one line (these processes would hang before)."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    for command in ("train", "tune"):
        result = zoo(command, "--config", fifo)
        refused = f"error: cannot read config file {fifo}: a FIFO, not a regular file\n"
        assert (result.returncode, result.stderr) == (2, refused)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "run.json"):
        (run / name).write_bytes((small_run / name).read_bytes())
    os.mkfifo(run / "metrics.jsonl")
    listed = zoo("runs", run)
    assert (listed.returncode, listed.stderr) == (
        2,
        f"error: {run} is damaged: metrics.jsonl cannot be read: a FIFO, not a regular file\n",
    )
    weights = tmp_path / "model.safetensors"
    os.mkfifo(weights)
    evaluated = zoo("eval", weights)
    assert (evaluated.returncode, evaluated.stderr) == (2, f"error: {weights} is not a file\n")


def test_values_echoed_in_errors_are_cut_to_a_readable_length(cli, tmp_path: Path) -> None:
    """A 1 MB config value is echoed as its first 200 characters, an ellipsis and its length,
    wherever an error repeats what the user gave."""
    huge = "y" * 1_000_000
    cut = f"'{'y' * 200}\u2026' (1,000,000 characters)"
    cases = {
        f'arch = "{huge}"': f"unknown architecture {cut}",
        f'epochs = "{huge}"': f"epochs must be int, got {cut}",
        f'arch = "simplecnn:padding={huge}"': f"padding must be one of same, valid, got {cut}",
        f'image_size = "{huge}"': f"image size must be N or HxW, got {cut}",
        f"{huge} = 3": f"unknown setting {cut}",
    }
    config = tmp_path / "config.toml"
    for text, message in cases.items():
        config.write_text(text + "\n")
        result = cli("train", "--config", config, "--epochs", "1", code=None)
        assert result.exit_code in (1, 2) and message in one_line(result.stderr), text[:40]
        assert len(result.stderr) < 600
    assert re.fullmatch(r"error: .*\n", cli("info", huge, code=2).stderr)
    assert len(cli("info", huge, code=2).stderr) < 600


@pytest.mark.parametrize(
    "command",
    [["train"], ["lr-find"], ["eval", "RUN"], ["predict", "RUN", "RUN"]],
    ids=["train", "lr-find", "eval", "predict"],
)
def test_workers_has_one_minimum_in_every_command(cli, small_run, command) -> None:
    """--workers is declared once (zoo.cli.options): the same minimum, 0, everywhere (predict
    refused 0, train took -1 to its own check)."""
    args = [small_run if a == "RUN" else a for a in command]
    result = cli(*args, "--workers", "-1", code=2)
    assert result.stderr == (
        "error: invalid value for '--workers': Input should be greater than or equal to 0 "
        f"(see zoo {command[0]} -h)\n"
    )
    helps = {
        cli(c, "--help").stdout.split("--workers N")[1].split("--")[0]
        for c in ("train", "lr-find", "eval", "predict")
    }
    assert len({" ".join(h.split()) for h in helps}) == 1


def test_predict_with_no_extra_decoding_threads(cli, small_run, tmp_path) -> None:
    from PIL import Image

    from zoo.builtins.loaders import digits_arrays

    Image.fromarray(digits_arrays()[0][0, 0]).save(tmp_path / "digit.png")
    rows = cli("predict", small_run, tmp_path / "digit.png", "--workers", "0", "--json").stdout
    assert '"error": null' in rows
