"""Start-up: with a valid registry cache, ``zoo --help``, ``zoo list`` and ``zoo list
--pretrained`` import neither torch nor the plugins, even with a timm-sized plugin installed; a
new version of a distribution invalidates the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
"""An installed plugin registering 1,400 architectures, like zoo-timm."""
import sys
import zoo

print("IMPORTED", file=sys.stderr)


def _factory(num_classes, in_chans, image_size, pretrained: bool = False):
    """A generated architecture."""
    raise RuntimeError("never built in these tests")


@zoo.hookimpl
def zoo_register_architectures(register):
    for i in range(1400):
        tags = [{"tag": "in1k", "hub_id": f"acme/net{i:04d}.in1k", "input_size": [3, 64, 64]}]
        register(f"net{i:04d}", _factory, extra={"pretrained": tags} if i % 2 else None)
'''

RUN = """
import sys
from zoo.cli import main
sys.argv = ["zoo", *{args}]
try:
    main()
except SystemExit:
    pass
plugins = "many_nets" in sys.modules or "timm" in sys.modules
print("TORCH", "torch" in sys.modules, "PLUGIN", plugins)
"""


def install(site: Path, version: str) -> None:
    """A distribution with a zoo.plugins entry point, as pip would lay it out (the module is
    written once, so a reinstall changes only the version)."""
    if not (site / "many_nets.py").exists():
        (site / "many_nets.py").write_text(PLUGIN)
    info = site / "many_nets-0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: many-nets\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[zoo.plugins]\nmany = many_nets\n")


def zoo(args: list[str], site: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "ZOO_CACHE_DIR": str(cache), "COLUMNS": "120"}
    code = textwrap.dedent(RUN.format(args=args))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    install(path, "1.0")
    return path


def test_a_large_plugin_is_listed_from_the_cache(site: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = zoo(["list", "--json"], site, cache)
    assert "IMPORTED" in first.stderr  # the first run loads every plugin to build the cache
    rows = json.loads(first.stdout.rsplit("TORCH", 1)[0])
    assert sum(r["source"] == "many-nets==1.0" for r in rows) == 1400
    for args in (
        ["--help"],
        ["list"],
        ["list", "architectures", "--filter", "net13*"],
        ["list", "losses", "--json"],
        ["list", "--pretrained", "--filter", "net00*"],
        ["plugins"],
    ):
        result = zoo(args, site, cache)
        assert result.returncode == 0, result.stderr
        assert result.stdout.rstrip().endswith("TORCH False PLUGIN False"), (args, result.stderr)
        assert "IMPORTED" not in result.stderr
    table = zoo(["list"], site, cache).stdout
    assert "net0999" in table and "1,400" in table
    pretrained = zoo(["list", "--pretrained", "--json", "--filter", "net*"], site, cache).stdout
    rows = json.loads(pretrained.rsplit("TORCH", 1)[0])
    assert len(rows) == 700 and rows[0]["name"] == "net0001.in1k"
    assert rows[0]["hub_id"] == "acme/net0001.in1k" and rows[0]["source"] == "many-nets==1.0"
    benchmark_help = zoo(["benchmark", "--help"], site, cache)
    assert "--channels-last" in benchmark_help.stdout
    assert benchmark_help.stdout.rstrip().endswith("TORCH False PLUGIN False")


def test_a_new_version_of_a_distribution_rebuilds_the_cache(site: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    zoo(["list"], site, cache)
    assert "IMPORTED" not in zoo(["list"], site, cache).stderr
    install(site, "2.0")
    upgraded = zoo(["list", "--json"], site, cache)
    assert "IMPORTED" in upgraded.stderr
    assert "many-nets==2.0" in upgraded.stdout and "many-nets==1.0" not in upgraded.stdout
    assert "IMPORTED" not in zoo(["list"], site, cache).stderr


def test_training_without_the_mlflow_callback_does_not_import_mlflow(tmp_path: Path) -> None:
    # zoo-mlflow is installed (its plugin module is loaded with the others): mlflow itself is
    # imported only by the callback's factory, when a run asks for it.
    code = (
        "import sys\nfrom zoo.cli import main\n"
        "sys.argv = ['zoo', 'train', '--image-size', '8', '--batch-size', '128', '--epochs', "
        "'1', '--out', 'run']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('MLFLOW', 'mlflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert (tmp_path / "run" / "summary.json").is_file(), result.stderr
    assert result.stdout.rstrip().endswith("MLFLOW False"), result.stdout
