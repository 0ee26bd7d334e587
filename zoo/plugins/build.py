"""Building the registry from plugins, and the one registry a process uses.

Nothing is built at import: ``get_registry()`` builds on first use. Tests call ``reset()`` (the
``zoo.testing`` fixture does) and may add plugin objects with ``add_plugin()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from zoo.plugins import cache
from zoo.plugins.loading import PluginLoader, PluginSource, discover
from zoo.plugins.registry import Component, PluginInfo, Registry


class PluginWarning(UserWarning):
    """A plugin failed to load; the others still did."""


_registry: Registry | None = None
_extra: list[tuple[str, object]] = []


def build_registry(*, use_cache: bool = True) -> Registry:
    """Discover plugins and index their components, through the cache when it is valid.

    The cache is used only for installed plugins: ZOO_PLUGINS modules and test objects change
    too often for a key to follow them, so their presence means a full load.
    """
    sources = discover(list(_extra))
    loader = PluginLoader(sources)
    cacheable = use_cache and all(s.origin == "entry point" for s in sources)
    key = cache.registry_key(sources) if cacheable else ""
    cached = cache.read(key) if cacheable else None
    if cached is not None:
        components = [Component.from_json(c) for c in cached["components"]]
        plugins = [PluginInfo(**p) for p in cached["plugins"]]
    else:
        components = [c for s in sources for c in loader.load(s.name)]
        plugins = [loader.info[s.name] for s in sources]
        if cacheable:
            # Again, now that the imports have settled: a first import may have written a
            # __pycache__ folder into site-packages, which changes its mtime.
            key = cache.registry_key(sources)
            cache.write(
                key,
                {
                    "components": [c.to_json() for c in components],
                    "plugins": [p.to_json() for p in plugins],
                },
            )
            cache.write(key, _extras_json(loader.extras), part="extras")
    for p in plugins:
        if p.status != "ok":
            warnings.warn(
                f"plugin {p.name!r} ({p.source}) failed to load: {p.error}; see `zoo plugins`",
                PluginWarning,
                stacklevel=2,
            )
    return Registry(
        components,
        plugins,
        loader,
        on_stale=cache.clear if cacheable else None,
        extras=_extras_loader(loader, sources, key),
        key=key,
    )


Extras = dict[tuple[str, str, str], dict[str, Any]]


def _extras_json(extras: Extras) -> dict[str, Any]:
    return {"extras": [[*k, v] for k, v in extras.items()]}


def _extras_loader(
    loader: PluginLoader, sources: list[PluginSource], key: str
) -> Callable[[], Extras]:
    """What plugins registered with ``extra=``: from the cache when valid (``key`` is empty
    when the registry is not cacheable), else by loading every plugin not loaded yet."""

    def load() -> Extras:
        cached = cache.read(key, part="extras") if key else None
        if cached is not None:
            return {(k, p, n): v for k, p, n, v in cached["extras"]}
        for s in sources:
            if s.name not in loader.info:
                loader.load(s.name)
        if key:
            cache.write(key, _extras_json(loader.extras), part="extras")
        return dict(loader.extras)

    return load


def get_registry() -> Registry:
    """The process's registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = build_registry()
    return _registry


def reset() -> None:
    """Forget the process's registry and any test plugins; the next use rebuilds it."""
    global _registry
    _registry = None
    _extra.clear()


def add_plugin(obj: object, name: str | None = None) -> str:
    """Register a plugin object (a module or instance with hook implementations) in-process."""
    global _registry
    plugin_name = name or getattr(obj, "__name__", None) or type(obj).__name__.lower()
    _extra.append((plugin_name, obj))
    _registry = None
    return plugin_name
