"""pytest support for plugin authors, loaded automatically through the ``pytest11`` entry point.

    def test_my_arch(zoo_plugins):
        zoo_plugins.register(my_plugin_module)
        model = zoo.create_model("myarch", num_classes=3)

The plugin is registered for that one test, exactly as an installed one would be, and
forgotten afterwards; nothing is installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


class PluginRegistrar:
    """What the ``zoo_plugins`` fixture yields."""

    def register(self, plugin: object, name: str | None = None) -> str:
        """Add a plugin object (a module, class or instance with ``@zoo.hookimpl`` hooks);
        returns the plugin name to use in qualified names (``name:component``)."""
        from zoo.plugins.build import add_plugin

        return add_plugin(plugin, name)

    def registry(self):
        """The registry as zoo now sees it (installed plugins plus the registered ones)."""
        from zoo.plugins.build import get_registry

        return get_registry()


@pytest.fixture
def zoo_plugins() -> Iterator[PluginRegistrar]:
    """Register plugin objects for the duration of one test."""
    from zoo.plugins.build import reset

    reset()
    yield PluginRegistrar()
    reset()
