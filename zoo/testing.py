"""The ``zoo_plugins`` pytest fixture for plugin authors (the ``pytest11`` entry point).

It lives in ``zoo.plugins.testing``; this module is the public name pytest loads.
"""

from zoo.plugins.testing import PluginRegistrar, zoo_plugins

__all__ = ["PluginRegistrar", "zoo_plugins"]
