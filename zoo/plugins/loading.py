"""Finding and loading plugins: entry points in ``zoo.plugins``, ``ZOO_PLUGINS``, test objects.

Nothing here runs at import. ``discover()`` lists plugin sources without importing them;
``PluginLoader`` imports one plugin at a time, registers it with pluggy and collects what its
hooks register, so a broken plugin is reported and the others still load.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from zoo.errors import ZooError, closest
from zoo.plugins import hookspecs
from zoo.plugins.registry import Component, PluginInfo, describe
from zoo.plugins.specs import NAME_RE

ENTRY_POINT_GROUP = "zoo.plugins"
CORE_DISTRIBUTION = "zoo"


@dataclass
class PluginSource:
    """Where a plugin comes from, known without importing it."""

    name: str
    module: str | None = None
    obj: object | None = None
    dist: str | None = None
    version: str | None = None
    # The folder holding the distribution's metadata (site-packages): installing, upgrading or
    # removing any package there, such as the library a plugin wraps, changes its mtime.
    location: str | None = None
    origin: str = "entry point"
    error: str | None = None  # set when the source cannot be loaded at all

    @property
    def builtin(self) -> bool:
        return self.dist == CORE_DISTRIBUTION and self.origin == "entry point"

    @property
    def source(self) -> str:
        """``dist==version`` for installed plugins, else how it was loaded."""
        if self.dist:
            return f"{self.dist}=={self.version}"
        return f"{self.module or self.name} ({self.origin})"


def discover(extra: list[tuple[str, object]] = ()) -> list[PluginSource]:  # type: ignore[assignment]
    """Every plugin to load, honouring ZOO_DISABLE_PLUGIN_AUTOLOAD and ZOO_PLUGINS."""
    only_builtins = os.environ.get("ZOO_DISABLE_PLUGIN_AUTOLOAD", "").strip() not in ("", "0")
    sources: list[PluginSource] = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        dist_name = metadata_name(dist)
        if only_builtins and dist_name != CORE_DISTRIBUTION:
            continue
        version = dist.version if dist is not None else None
        location = str(dist.locate_file("")) if dist is not None else None
        sources.append(
            PluginSource(
                ep.name, module=ep.value, dist=dist_name, version=version, location=location
            )
        )
    for item in os.environ.get("ZOO_PLUGINS", "").split(","):
        item = item.strip()
        if item:
            name = Path(item).stem if item.endswith(".py") else item
            sources.append(PluginSource(name, module=item, origin="ZOO_PLUGINS"))
    sources.extend(PluginSource(name, obj=obj, origin="test") for name, obj in extra)
    # One plugin per name: an object registered by a test shadows the installed plugin of that
    # name (testing a checkout over an installed copy); any other clash is an error.
    unique: dict[str, PluginSource] = {}
    for s in sources:
        if s.name in unique and s.origin != "test":
            s.error = f"plugin name {s.name!r} is already used by {unique[s.name].source}"
            s.name = f"{s.name} ({s.source})"
        unique[s.name] = s
    return list(unique.values())


def metadata_name(dist: metadata.Distribution | None) -> str | None:
    """A distribution's canonical-ish name, or None for entry points without one."""
    if dist is None:
        return None
    return (dist.metadata["Name"] or "").lower().replace("_", "-") or None


def build_plugin_manager() -> pluggy.PluginManager:
    """A fresh pluggy manager that knows zoo's hooks and nothing else."""
    pm = pluggy.PluginManager("zoo")
    pm.add_hookspecs(hookspecs)
    return pm


class PluginLoader:
    """Imports plugins one at a time and collects the components each registers."""

    def __init__(self, sources: list[PluginSource]) -> None:
        self.pm = build_plugin_manager()
        self.sources = {s.name: s for s in sources}
        self.info: dict[str, PluginInfo] = {}
        self.factories: dict[tuple[str, str, str], Callable[..., Any]] = {}
        # What plugins registered beside their components (``register(..., extra={...})``).
        self.extras: dict[tuple[str, str, str], dict[str, Any]] = {}

    def load(self, name: str) -> list[Component]:
        """Import and register plugin ``name``; return its components (errors are recorded)."""
        source = self.sources[name]
        info = PluginInfo(
            name, source.source, source.module, source.dist, source.version, source.builtin
        )
        self.info[name] = info
        if source.error:
            info.status, info.error = "error", source.error
            return []
        try:
            plugin = source.obj if source.obj is not None else _import(source.module or name)
            _check_hook_names(plugin, name)
            self.pm.register(plugin, name=name)
        except Exception as exc:  # any import-time failure of a third-party module
            info.status, info.error = "error", _one_line(exc)
            return []
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
        try:
            return self._collect(plugin, source)
        except Exception as exc:
            self.pm.unregister(plugin)
            info.status, info.error = "error", _one_line(exc)
            return []

    def _collect(self, plugin: object, source: PluginSource) -> list[Component]:
        found: list[Component] = []
        for kind, hook_name in hookspecs.HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                seen: set[str] = set()

                def register(
                    name: str,
                    factory: Callable[..., Any],
                    *,
                    summary: str | None = None,
                    aliases: tuple[str, ...] | list[str] = (),
                    extra: dict[str, Any] | None = None,
                    _kind: str = kind,
                    _seen: set[str] = seen,
                ) -> None:
                    for label in (name, *aliases):
                        if not isinstance(label, str) or not NAME_RE.match(label):
                            raise ValueError(
                                f"invalid {_kind} name {label!r}: use lowercase [a-z0-9_.-]+"
                            )
                        if label in _seen:
                            raise ValueError(f"{_kind} {label!r} registered twice")
                        _seen.add(label)
                    if not callable(factory):
                        raise ValueError(f"{_kind} {name!r}: factory is not callable")
                    if extra is not None and not isinstance(extra, dict):
                        raise ValueError(f"{_kind} {name!r}: extra must be a dict of JSON values")
                    self.factories[(_kind, source.name, name)] = factory
                    if extra:
                        self.extras[(_kind, source.name, name)] = extra
                    found.append(
                        Component(
                            kind=_kind,
                            name=name,
                            plugin=source.name,
                            source=source.source,
                            summary=summary or describe(factory),
                            aliases=tuple(aliases),
                        )
                    )

                impl.function(register=register)
        return found


def _import(module: str) -> object:
    """Import a module by dotted name, or a ``.py`` file path (for ZOO_PLUGINS)."""
    if module.endswith(".py"):
        path = Path(module).resolve()
        if not path.is_file():
            raise ModuleNotFoundError(f"no plugin file {module}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = mod
        spec.loader.exec_module(mod)
        return mod
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Local development: a module in the working directory, which console scripts lack on
        # sys.path. Only retry when it is the plugin itself that is missing.
        if exc.name != module.split(".")[0] or os.getcwd() in sys.path:
            raise
        sys.path.insert(0, os.getcwd())
        return importlib.import_module(module)


def _check_hook_names(plugin: object, name: str) -> None:
    """Refuse misspelled hooks and hooks missing the @zoo.hookimpl marker, naming the plugin."""
    known = set(hookspecs.HOOKS.values())
    for attr in dir(plugin):
        if not attr.startswith("zoo_"):
            continue
        value = getattr(plugin, attr, None)
        marked = callable(value) and hasattr(value, "zoo_impl")
        if marked and attr not in known:
            hint = closest(attr, known, n=1)
            suffix = f" (did you mean {hint[0]}?)" if hint else ""
            raise ZooError(f"plugin {name!r} implements unknown hook {attr!r}{suffix}")
        if attr in known and callable(value) and not marked:
            raise ZooError(f"plugin {name!r}: {attr} lacks the @zoo.hookimpl decorator")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(exc, ZooError):
        return message
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
