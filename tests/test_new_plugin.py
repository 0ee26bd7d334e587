"""``zoo new-plugin``: the package it writes installs offline, its own tests pass, and
``zoo train`` uses its components; bad names and existing folders are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(args: list[str], cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "ZOO_CACHE_DIR": str(cwd / "zoo-cache"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def test_generated_plugin_installs_passes_its_tests_and_trains(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = cli("new-plugin", "acme").stdout
    package = tmp_path / "zoo-acme"
    assert "wrote zoo-acme/" in out and "plugin 'acme', module zoo_acme" in out
    assert sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()) == [
        "README.md",
        "pyproject.toml",
        "tests/test_plugin.py",
        "zoo_acme/__init__.py",
    ]
    pyproject = (package / "pyproject.toml").read_text()
    assert 'name = "zoo-acme"' in pyproject and 'acme = "zoo_acme"' in pyproject

    site = tmp_path / "site"
    pip = ["-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation"]
    _ok(_run([*pip, "--target", str(site), str(package)], tmp_path, site))
    assert (site / "zoo_acme" / "__init__.py").is_file()

    tests = _ok(
        _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(package)], tmp_path, site)
    )
    assert "4 passed" in tests

    listed = _ok(_run(["-m", "zoo", "list", "--filter", "acme_*"], tmp_path, site))
    assert "acme_net" in listed and "zoo-acme==0.1.0" in listed
    train = [
        "-m", "zoo", "train", "--arch", "acme_net:width=8", "--aug", "hflip",
        "--aug", "acme_noise:std=0.1", "--loss", "acme:acme_poly1", "--epochs", "1",
        "--image-size", "8", "--batch-size", "128", "--out", "runs/acme",
    ]  # fmt: skip
    trained = _ok(_run(train, tmp_path, site))
    assert "arch acme:acme_net" in trained
    config = (tmp_path / "runs" / "acme" / "config.toml").read_text()
    assert 'aug = ["zoo:hflip", "acme:acme_noise:std=0.1"]' in config
    assert 'loss = "acme:acme_poly1"' in config

    # A factory that raises is reported as that plugin's component, in one line.
    module = site / "zoo_acme" / "__init__.py"
    source = module.read_text()
    assert "    from torch import nn\n" in source
    module.write_text(
        source.replace("    from torch import nn\n", "    raise RuntimeError('no')\n", 1)
    )
    broken = _run([*train[:-2], "--out", "runs/broken"], tmp_path, site)
    assert broken.returncode == 1
    assert (
        broken.stderr.strip()
        == "error: architecture 'acme:acme_net' failed to build: RuntimeError: no"
    )


def test_new_plugin_refuses_existing_folders_and_bad_names(cli, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    cli("new-plugin", "lab", "--dir", target)
    assert (target / "zoo_lab" / "__init__.py").is_file()
    before = (target / "pyproject.toml").read_text()
    again = cli("new-plugin", "other", "--dir", target, code=2)
    assert (
        again.stderr.strip() == f"error: {target} already exists; choose another --dir or remove it"
    )
    assert (target / "pyproject.toml").read_text() == before
    for bad in ("Acme", "2fast", "my-lab", "class"):
        result = cli("new-plugin", bad, "--dir", tmp_path / "x", code=2)
        assert f"error: invalid plugin name {bad!r}" in result.stderr
    taken = cli("new-plugin", "timm", "--dir", tmp_path / "x", code=2)
    assert "a plugin named 'timm' is already installed (zoo-timm==" in taken.stderr
    assert not (tmp_path / "x").exists()
