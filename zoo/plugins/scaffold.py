"""``zoo new-plugin``: write a ready-to-install plugin package from the templates shipped in
``zoo/plugins/templates/plugin``.

The package for plugin ``NAME`` is the distribution ``zoo-NAME`` with module ``zoo_NAME`` and
entry point ``NAME`` (as zoo-timm is ``zoo-timm``/``zoo_timm``/``timm``). It registers one
architecture, one augmentation and one loss, and tests them with the ``zoo_plugins`` fixture.
"""

from __future__ import annotations

import keyword
import re
import string
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.errors import ZooError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MODULE_DIR = "MODULE"
_SUFFIX = ".tmpl"


def names(name: str) -> dict[str, str]:
    """What the templates substitute: plugin name, distribution, module, zoo's version."""
    from zoo import __version__

    return {
        "name": name,
        "dist": f"zoo-{name.replace('_', '-')}",
        "module": f"zoo_{name}",
        "zoo_version": __version__,
    }


def check_name(name: str) -> None:
    """Refuse names that are not usable as an entry point, module suffix and component prefix,
    and names an installed plugin already has."""
    if not PLUGIN_NAME.match(name) or keyword.iskeyword(name):
        raise ZooError(
            f"invalid plugin name {name!r}: use a lowercase letter, then lowercase letters, "
            "digits or _ (at most 40 characters), e.g. acme or my_lab"
        )
    from zoo.plugins.loading import discover

    for source in discover():
        if source.name == name:
            raise ZooError(f"a plugin named {name!r} is already installed ({source.source})")


def create(name: str, target: Path | None = None) -> tuple[Path, list[Path]]:
    """Write the package for plugin ``name`` into ``target`` (default ``./zoo-NAME``), which must
    not exist; returns the directory and the files written."""
    check_name(name)
    values = names(name)
    target = Path(target) if target is not None else Path(values["dist"])
    if target.exists():
        raise ZooError(f"{target} already exists; choose another --dir or remove it")
    templates = resources.files("zoo.plugins") / "templates" / "plugin"
    rendered = [(path, _render(source, values)) for path, source in _walk(templates, Path())]
    written = []
    for relative, text in rendered:
        path = target / Path(str(relative).replace(_MODULE_DIR, values["module"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return target, written


def _walk(folder: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _walk(entry, relative / entry.name)
        elif entry.name.endswith(_SUFFIX):
            found.append((relative / entry.name.removesuffix(_SUFFIX), entry))
    return found


def _render(template: Traversable, values: dict[str, str]) -> str:
    try:
        return string.Template(template.read_text()).substitute(values)
    except (KeyError, ValueError) as exc:  # a broken template is zoo's bug, not the user's
        raise RuntimeError(f"plugin template {template.name}: {exc!r}") from exc
