"""The plugin contract: discovery, conflicts, broken plugins, the registry cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import ZooError


def tiny_net(num_classes: int, in_chans: int, image_size: object, width: int = 4) -> object:
    """A one-layer test network."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_chans, width, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(width, num_classes),
    )


class Acme:
    @zoo.hookimpl
    def zoo_register_architectures(self, register):
        register("tiny", tiny_net, aliases=("mini",))


class Rival:
    @zoo.hookimpl
    def zoo_register_architectures(self, register):
        register("tiny", tiny_net, summary="The rival's tiny net")


def test_builtins_are_a_plugin_loaded_from_the_entry_point() -> None:
    from zoo.plugins.build import get_registry

    plugins = {p.name: p for p in get_registry().plugins()}
    core = plugins["zoo"]
    assert core.builtin and core.dist == "zoo" and core.module == "zoo.builtins"
    assert core.status == "ok" and "zoo_register_architectures" in core.hooks
    names = {(c.kind, c.name) for c in zoo.list_components()}
    assert {
        ("architecture", "simplecnn"),
        ("loss", "cross_entropy"),
        ("augmentation", "mixup"),
        ("dataset", "digits"),
        ("optimizer", "adamw"),
        ("scheduler", "cosine"),
    } <= names


def test_fixture_registers_a_plugin_for_one_test(zoo_plugins) -> None:
    assert zoo_plugins.register(Acme(), "acme") == "acme"
    model = zoo.create_model("tiny", num_classes=3, in_chans=1, image_size=8, width=2)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    assert zoo.create_model("acme:mini", num_classes=2) is not None
    component = zoo_plugins.registry().resolve("architecture", "mini")
    assert component.qualified == "acme:tiny" and component.source == "acme (test)"
    assert component.summary == "A one-layer test network."


def test_registered_plugins_are_gone_in_the_next_test() -> None:
    with pytest.raises(ZooError, match="unknown architecture 'tiny'"):
        zoo.create_model("tiny", num_classes=3)


def test_same_name_from_two_plugins_keeps_both(zoo_plugins, cli) -> None:
    zoo_plugins.register(Acme(), "acme")
    zoo_plugins.register(Rival(), "rival")
    with pytest.raises(ZooError) as err:
        zoo.create_model("tiny", num_classes=3)
    assert "provided by several plugins; use one of: acme:tiny, rival:tiny" in str(err.value)
    assert isinstance(zoo.create_model("rival:tiny", num_classes=3), torch.nn.Module)
    listing = cli("list", "architectures").stdout
    assert "tiny (conflict: acme:tiny)" in listing and "tiny (conflict: rival:tiny)" in listing
    assert "use acme:tiny or rival:tiny" in listing
    rows = json.loads(cli("list", "--json", "--filter", "tiny").stdout)
    assert {r["qualified"] for r in rows} == {"acme:tiny", "rival:tiny"}
    assert all(r["conflict"] for r in rows)
    bad = cli("train", "--arch", "tiny", code=2)
    assert "acme:tiny, rival:tiny" in bad.stderr and "Traceback" not in bad.output


class Misspelled:
    @zoo.hookimpl
    def zoo_register_architecture(self, register):  # missing the final 's'
        register("never", tiny_net)


class Unmarked:
    def zoo_register_losses(self, register):
        register("never", tiny_net)


class Raising:
    @zoo.hookimpl
    def zoo_register_losses(self, register):
        raise RuntimeError("boom")


class BadName:
    @zoo.hookimpl
    def zoo_register_losses(self, register):
        register("Not Valid", tiny_net)


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            Misspelled(),
            "implements unknown hook 'zoo_register_architecture' "
            "(did you mean zoo_register_architectures?)",
        ),
        (Unmarked(), "zoo_register_losses lacks the @zoo.hookimpl decorator"),
        (Raising(), "RuntimeError: boom"),
        (BadName(), "invalid loss name 'Not Valid'"),
    ],
)
def test_broken_plugins_are_reported_and_the_rest_load(zoo_plugins, cli, plugin, message) -> None:
    zoo_plugins.register(plugin, "broken")
    zoo_plugins.register(Acme(), "acme")
    result = cli("list", "architectures")
    assert "tiny" in result.stdout and "simplecnn" in result.stdout
    warning = [line for line in result.stderr.splitlines() if "broken" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: plugin 'broken'")
    assert message in warning[0]
    status = {p["name"]: p for p in json.loads(cli("plugins", "--json").stdout)}
    assert status["broken"]["status"] == "error" and message in status["broken"]["error"]
    assert status["acme"]["status"] == "ok"


def _run(code: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "cache")}


def test_zoo_plugins_loads_uninstalled_modules(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "localdev.py").write_text(
        textwrap.dedent('''
        import zoo

        def focal2(gamma: float = 2.0):
            """A local loss."""
            return lambda logits, targets: logits.sum() * 0

        @zoo.hookimpl
        def zoo_register_losses(register):
            register("focal2", focal2)
    ''')
    )
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "list", "losses"],
        cwd=tmp_path,
        env={**env, "ZOO_PLUGINS": "localdev, broken.py"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "focal2" in result.stdout and "localdev (ZOO_PLUGINS)" in result.stdout
    assert "cross_entropy" in result.stdout
    assert (
        "warning: plugin 'broken' (broken.py (ZOO_PLUGINS)) failed to load: "
        "ModuleNotFoundError: No module named 'not_a_module_anywhere'"
    ) in result.stderr


def test_disable_autoload_keeps_only_builtins(env: dict[str, str]) -> None:
    code = """
        from zoo.plugins.build import get_registry
        print(sorted(p.name for p in get_registry().plugins()))
    """
    everything = _run(code, env).stdout
    assert "'timm'" in everything and "'zoo'" in everything
    only = _run(code, {**env, "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}).stdout
    assert only.strip() == "['zoo']"


def test_cache_answers_without_importing_plugins_or_torch(env: dict[str, str]) -> None:
    code = """
        import sys
        from zoo.plugins.build import get_registry
        names = [c.name for c in get_registry().components()]
        print(len(names), 'zoo_timm' in sys.modules, 'torch' in sys.modules)
    """
    cold = _run(code, env).stdout.split()
    warm = _run(code, env).stdout.split()
    assert cold[0] == warm[0] and int(cold[0]) > 20
    assert cold[1] == "True"  # first run imports every plugin to build the cache
    assert warm[1:] == ["False", "False"]
    cache_files = list(Path(env["ZOO_CACHE_DIR"]).glob("registry-*.json"))
    assert len(cache_files) == 1


def test_the_cache_folder_is_zoo_cache_dir_else_xdg_cache_home(tmp_path: Path, env) -> None:
    """As docs/plugins.md says: $ZOO_CACHE_DIR, else $XDG_CACHE_HOME/zoo, else ~/.cache/zoo."""
    code = "from zoo.plugins.build import get_registry; get_registry()"
    env = {**env, "ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}  # zoo's own plugin: a quick build
    xdg = {**env, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    _run(code, {k: v for k, v in xdg.items() if k != "ZOO_CACHE_DIR"})
    assert len(list((tmp_path / "xdg" / "zoo").glob("registry-*.json"))) == 1
    home = {k: v for k, v in env.items() if k not in ("ZOO_CACHE_DIR", "XDG_CACHE_HOME")}
    _run(code, {**home, "HOME": str(tmp_path / "home")})
    assert len(list((tmp_path / "home" / ".cache" / "zoo").glob("registry-*.json"))) == 1
    _run(code, xdg)  # ZOO_CACHE_DIR wins
    assert len(list(Path(env["ZOO_CACHE_DIR"]).glob("registry-*.json"))) == 1


def test_stale_cache_is_rebuilt_when_a_plugin_changes(tmp_path: Path, env: dict[str, str]) -> None:
    from zoo.plugins import cache
    from zoo.plugins.loading import discover

    os.environ["ZOO_CACHE_DIR"], saved = env["ZOO_CACHE_DIR"], os.environ["ZOO_CACHE_DIR"]
    try:
        sources = discover()
        key = cache.registry_key(sources)
        cache.write(key, {"components": [], "plugins": []})
        assert cache.read(key) is not None
        builtins = Path(zoo.__file__).parent / "builtins" / "losses.py"
        stat = builtins.stat()
        os.utime(builtins, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        try:
            assert cache.registry_key(sources) != key
            assert cache.read(cache.registry_key(sources)) is None
        finally:
            os.utime(builtins, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    finally:
        os.environ["ZOO_CACHE_DIR"] = saved


def test_import_zoo_does_not_import_torch(env: dict[str, str]) -> None:
    result = _run("import sys, zoo; zoo.hookimpl; print('torch' in sys.modules)", env)
    assert result.stdout.strip() == "False"


def test_a_second_plugin_with_a_taken_name_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "clash").mkdir()
    (tmp_path / "clash" / "timm.py").write_text("raise SystemExit('must not be imported')\n")
    code = """
        import json
        from zoo.plugins.build import get_registry
        print(json.dumps([p.to_json() for p in get_registry().plugins()]))
    """
    result = _run(code, {**env, "ZOO_PLUGINS": "clash/timm.py"}, cwd=tmp_path)
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["timm"]["status"] == "ok" and plugins["timm"]["dist"] == "zoo-timm"
    clash = plugins["timm (clash/timm.py (ZOO_PLUGINS))"]
    assert clash["status"] == "error"
    assert clash["error"] == "plugin name 'timm' is already used by zoo-timm==0.1.0"


def test_a_test_object_shadows_the_installed_plugin_of_that_name(zoo_plugins) -> None:
    zoo_plugins.register(Acme(), "timm")
    timm = [p for p in zoo_plugins.registry().plugins() if p.name == "timm"]
    assert len(timm) == 1 and timm[0].source == "timm (test)"
    assert zoo_plugins.registry().resolve("architecture", "tiny").plugin == "timm"


class Odd:
    """A plugin with a factory that returns no network, and a name rich would read as markup."""

    @zoo.hookimpl
    def zoo_register_architectures(self, register):
        register("notanet", lambda num_classes, in_chans, image_size: "a string")


class Picky:
    @zoo.hookimpl
    def zoo_register_losses(self, register):
        raise ValueError("names must match [a-z0-9_.-] and [bold]not this[/bold]")


def test_plugin_errors_and_bad_factories_are_one_line(zoo_plugins, cli) -> None:
    zoo_plugins.register(Odd(), "odd")
    zoo_plugins.register(Picky(), "picky")
    result = cli("info", "notanet", code=1)
    assert result.stderr.splitlines()[-1] == (
        "error: architecture 'odd:notanet' returned str, not a torch.nn.Module"
    )
    assert "Traceback" not in result.output
    table = cli("plugins").stdout  # the error as the plugin wrote it, not read as markup
    assert "names must match [a-z0-9_.-] and [bold]not this[/bold]" in " ".join(table.split())
