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
heavy = ("many_nets", "timm", "datasets", "webdataset", "pyarrow", "pandas")
plugins = any(name in sys.modules for name in heavy)  # plugins, and the data sources' libraries
serving = [m for m in ("fastapi", "uvicorn", "prometheus_client", "starlette") if m in sys.modules]
print("SERVE", serving)
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
    path = tmp_path / "site-packages"  # named as pip and uv name it
    path.mkdir()
    install(path, "1.0")
    return path


def test_a_large_plugin_is_listed_from_the_cache(site: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = zoo(["list", "--json"], site, cache)
    assert "IMPORTED" in first.stderr  # the first run loads every plugin to build the cache
    rows = json.loads(first.stdout.rsplit("SERVE", 1)[0])
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
        assert "SERVE []" in result.stdout, args  # zoo serve's libraries: only when it serves
        assert "IMPORTED" not in result.stderr
    table = zoo(["list"], site, cache).stdout
    assert "net0999" in table and "1,400" in table
    pretrained = zoo(["list", "--pretrained", "--json", "--filter", "net*"], site, cache).stdout
    rows = json.loads(pretrained.rsplit("SERVE", 1)[0])
    assert len(rows) == 700 and rows[0]["name"] == "net0001.in1k"
    assert rows[0]["hub_id"] == "acme/net0001.in1k" and rows[0]["source"] == "many-nets==1.0"
    benchmark_help = zoo(["benchmark", "--help"], site, cache)
    assert "--channels-last" in benchmark_help.stdout
    assert benchmark_help.stdout.rstrip().endswith("TORCH False PLUGIN False")
    serve_help = zoo(["serve", "--help"], site, cache)
    assert "--max-batch" in serve_help.stdout and "SERVE []" in serve_help.stdout
    assert serve_help.stdout.rstrip().endswith("TORCH False PLUGIN False")


def test_a_new_version_of_a_distribution_rebuilds_the_cache(site: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    zoo(["list"], site, cache)
    assert "IMPORTED" not in zoo(["list"], site, cache).stderr
    install(site, "2.0")
    upgraded = zoo(["list", "--json"], site, cache)
    assert "IMPORTED" in upgraded.stderr
    assert "many-nets==2.0" in upgraded.stdout and "many-nets==1.0" not in upgraded.stdout
    assert "IMPORTED" not in zoo(["list"], site, cache).stderr
    # A library the plugin wraps, upgraded beside it (pip replaces its dist-info folder), can
    # change what the plugin registers (timm's models under zoo-timm): the cache is rebuilt.
    (site / "library-2.0.dist-info").mkdir()
    assert "IMPORTED" in zoo(["list"], site, cache).stderr
    assert "IMPORTED" not in zoo(["list"], site, cache).stderr


TRAIN = """
import atexit, sys
atexit.register(lambda: print("DYNAMO", "torch._dynamo" in sys.modules))
atexit.register(lambda: print("MLFLOW", "mlflow" in sys.modules))
from zoo.cli import main
sys.argv = ["zoo", "train", "--epochs", "1", "--image-size", "8", "--batch-size", "64",
            "--out", {out!r}]
main()
"""


@pytest.fixture(scope="module")
def eager_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    """A ``zoo train`` process: its run directory, its output, and its peak resident memory
    as ``/usr/bin/time -v`` reports it (``ru_maxrss`` from ``wait4``)."""
    tmp = tmp_path_factory.mktemp("eager")
    out, log = tmp / "run", tmp / "log"
    # The registry cache first: building it imports the plugins (timm imports torch._dynamo).
    subprocess.run([sys.executable, "-m", "zoo", "list", "--json"], capture_output=True, check=True)
    with log.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(TRAIN.format(out=str(out)))],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text()
    assert proc.returncode == 0, output
    return out, output, usage.ru_maxrss / 1024


def test_a_run_without_compile_never_imports_dynamo(eager_run) -> None:
    _, output, _ = eager_run
    assert "DYNAMO False" in output  # torch's optimizers would import it (seconds)


def test_training_without_the_mlflow_callback_does_not_import_mlflow(eager_run) -> None:
    # zoo-mlflow is installed (its plugin module is loaded with the others): mlflow itself is
    # imported only by the callback's factory, when a run asks for it.
    _, output, _ = eager_run
    assert "MLFLOW False" in output


def test_the_reported_peak_memory_is_the_processs_peak(eager_run) -> None:
    out, _, time_v = eager_run
    reported = json.loads((out / "summary.json").read_text())["memory"]["peak_rss_mb"]
    # Python's teardown would add ~110 MiB of torch's library pages after the summary.
    assert abs(reported - time_v) <= 0.03 * time_v, (reported, time_v)


STEPS = """
import copy, sys, torch
from zoo.train.eager import skip_dynamo
torch.manual_seed(0)
a = torch.nn.Linear(6, 3)
b = copy.deepcopy(a)
x = torch.randn(16, 6)

def train(net):
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    skip_dynamo(opt)
    for _ in range(3):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
    return opt.state_dict()

skip_dynamo()
state = train(a)
print("DYNAMO", "torch._dynamo" in sys.modules)
import torch._dynamo  # as --compile would: torch's own wrappers take over
train(b)
print("SAME", all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())))
print("STEPS", state["state"][0]["step"].item())
"""


def test_optimizers_step_alike_with_and_without_dynamo_loaded() -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STEPS)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["DYNAMO", "False", "SAME", "True", "STEPS", "3.0"]
