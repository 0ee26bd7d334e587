"""The plugin machinery: hooks, finding and loading plugins, the registry and its cache,
component specs, and the kit for plugin authors (pytest fixture, ``zoo new-plugin``).

Nothing here imports torch.
"""
