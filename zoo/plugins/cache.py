"""The registry cache: ``zoo list`` and ``zoo --help`` answer without importing plugins or torch.

The key covers zoo's version, the Python environment, every plugin's distribution and version,
a digest of its source files' sizes and modification times (so editable installs under
development are picked up), the modification time of the folders holding the plugins'
distributions (installing or upgrading any package there, such as timm under zoo-timm, changes
it), and the environment variables that change which plugins load.
Any change to those rebuilds the cache; a cache that cannot be written is simply not used.

Two files share that key: ``registry-ENV.json`` (components and plugins, read by every command)
and ``extras-ENV.json`` (what plugins registered beside their components with ``extra=``, such
as timm's 1,800 pretrained tags), read only by the commands that need it, so that the common
path stays small. Other caches of facts about the components use the same key
(``Registry.key``), in files of their own: ``zoo probe``'s ``probe-sizes-ENV.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMAT = 1
_MAX_FILES = 2000


def cache_dir() -> Path:
    """``$ZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``."""
    if os.environ.get("ZOO_CACHE_DIR"):
        return Path(os.environ["ZOO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo"


def registry_path(part: str = "registry") -> Path:
    """The cache file of one part (``registry`` or ``extras``) for this Python environment."""
    env = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return cache_dir() / f"{part}-{env}.json"


def registry_key(sources: Iterable[Any]) -> str:
    """A digest of everything that decides which components the plugins register."""
    from zoo import __version__

    parts: list[Any] = [FORMAT, __version__, sys.prefix, os.environ.get("ZOO_PLUGINS", "")]
    parts.append(os.environ.get("ZOO_DISABLE_PLUGIN_AUTOLOAD", ""))
    for s in sources:
        parts.append([s.name, s.module, s.dist, s.version, source_stamp(s.module or "")])
    parts.append({where: _mtime(where) for where in _package_folders(sources)})
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def read(key: str, part: str = "registry") -> dict[str, Any] | None:
    """The cached part for this key, or None when missing, stale or unreadable."""
    try:
        data = json.loads(registry_path(part).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def write(key: str, data: dict[str, Any], part: str = "registry") -> None:
    """Store a part atomically; a read-only cache directory only costs speed."""
    from zoo.files.atomic import atomic_write

    with contextlib.suppress(OSError):  # e.g. a file where the cache directory should be
        atomic_write(registry_path(part), json.dumps({**data, "key": key}).encode())


def clear() -> None:
    for part in ("registry", "extras"):
        registry_path(part).unlink(missing_ok=True)


def _package_folders(sources: Iterable[Any]) -> list[str]:
    """The site-packages folders that hold the plugins' distributions. A distribution found
    elsewhere (a source checkout's ``*.egg-info`` on ``sys.path``) is left out: that folder
    changes with every file written beside it, and its sources are stamped anyway."""
    found = {os.path.abspath(s.location) for s in sources if s.location}
    return sorted(p for p in found if os.path.basename(p) in ("site-packages", "dist-packages"))


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def source_stamp(module: str) -> str | None:
    """A digest of a plugin module's source files (paths, sizes, mtimes), found without
    importing it, so editing any file of an editable install invalidates the cache."""
    if module.endswith(".py"):
        files: list[Path] = [Path(module)]
    else:
        spec = _find_spec(module)
        if spec is None:
            return None
        if spec.submodule_search_locations:
            files = sorted(_py_files(spec.submodule_search_locations))[:_MAX_FILES]
        elif spec.origin:
            files = [Path(spec.origin)]
        else:
            return None
    digest = hashlib.sha256()
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _find_spec(module: str) -> Any:
    """importlib's search, walking parent packages by their spec instead of importing them."""
    path = None
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = next((s for f in sys.meta_path if (s := _try_find(f, name, path)) is not None), None)
        if spec is None:
            return None
        path = spec.submodule_search_locations
    return spec


def _try_find(finder: Any, name: str, path: Any) -> Any:
    find = getattr(finder, "find_spec", None)
    if find is None:
        return None
    try:
        return find(name, path)
    except (ImportError, ValueError, AttributeError):
        return None


def _py_files(locations: Iterable[str]) -> Iterable[Path]:
    for location in locations:
        for root, dirs, files in os.walk(location):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for f in files:
                if f.endswith(".py"):
                    yield Path(root, f)
