"""The docs site: it builds strictly, and its CLI reference is generated from the app."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import typer.main

from zoo.cli import build_app
from zoo.cli.reference import cli_reference
from zoo.train.config import FIELDS

ROOT = Path(__file__).resolve().parent.parent


def test_reference_lists_every_command_and_train_option() -> None:
    text = cli_reference()
    group = typer.main.get_command(build_app())
    ctx = group.make_context("zoo", [], resilient_parsing=True)
    for name in group.list_commands(ctx):
        assert f"## `zoo {name}`" in text
    for name in FIELDS:
        assert f"--{name.replace('_', '-')}" in text, name


def _build(root: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_site_builds_strictly(tmp_path: Path) -> None:
    result = _build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "zoo train" in page and "--resume" in page


def test_broken_links_and_unlisted_pages_fail_the_build(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "training.md").open("a") as f:
        f.write("\nSee [the missing page](missing.md).\n")
    assert _build(tmp_path, tmp_path / "site").returncode != 0
    (tmp_path / "docs" / "training.md").write_text((ROOT / "docs" / "training.md").read_text())
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    assert _build(tmp_path, tmp_path / "site").returncode != 0
