"""The folder tree is the architecture: docs/architecture.md's layout table names every module
of every package, so the page and the tree cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zoo"
# The top level keeps the public surface and the import paths plugins already use.
TOP_LEVEL = {"__init__", "__main__", "api", "errors", "hookspecs", "testing"}


def layout_rows() -> dict[str, str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", text, flags=re.MULTILINE)
    return dict(rows)


def test_the_top_level_keeps_only_the_public_surface() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == TOP_LEVEL


def test_every_module_is_named_in_its_packages_row() -> None:
    rows = layout_rows()
    packages = sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert {f"zoo/{p.name}/" for p in packages} <= rows.keys()
    missing = [
        f"zoo/{package.name}/{module.name}"
        for package in packages
        for module in sorted(package.glob("*.py"))
        if module.stem != "__init__" and f"`{module.stem}`" not in rows[f"zoo/{package.name}/"]
    ]
    assert not missing, f"docs/architecture.md's layout table does not name {missing}"
    for plugin in sorted((ROOT / "plugins").iterdir()):
        assert f"plugins/{plugin.name}/" in rows


# Modules over the limit that another change splits, with the reason they are still here.
OVER_LIMIT: dict[str, str] = {}


def test_no_module_is_over_500_lines() -> None:
    """docs/architecture.md's promise: one job per module, none over 500 lines."""
    long = {
        module.relative_to(ROOT).as_posix(): lines
        for module in sorted(PACKAGE.rglob("*.py"))
        if (lines := len(module.read_text().splitlines())) > 500
    }
    assert set(long) <= set(OVER_LIMIT), f"modules over 500 lines: {long}"


def test_no_module_imports_another_modules_private_names() -> None:
    """A name with a leading underscore is its module's own: what two modules share is public
    (zoo lr-find borrowed zoo train's _given and _option to layer its config)."""
    import ast

    borrowed = [
        f"{module.relative_to(ROOT).as_posix()}: {alias.name} from {node.module}"
        for module in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(module.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zoo")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not borrowed, borrowed


def _section(title: str) -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def import_layers() -> tuple[dict[str, int], set[tuple[str, str]]]:
    """docs/architecture.md's import direction: each package or top-level module's layer
    (0 first), and the known exceptions as (importing module, imported module)."""
    section = _section("Import direction")
    items = re.findall(r"^(\d+)\. (.*(?:\n {4}.*)*)", section, flags=re.MULTILINE)
    layers = {
        name: int(number) - 1 for number, line in items for name in re.findall(r"`([^`]+)`", line)
    }
    exceptions = set(re.findall(r"^- `(zoo\.[\w.]+)` → `(zoo\.[\w.]+)`", section, re.MULTILINE))
    return layers, exceptions


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Every zoo module ``path`` imports, anywhere in it (functions included), with its line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            for alias in node.names:  # `from zoo import errors` imports the module zoo.errors
                sub = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*sub.split(".")).with_suffix(".py")).is_file() or (
                    ROOT / Path(*sub.split("."))
                ).is_dir()
                found.append((sub if is_module else base, node.lineno))
    return [(m, line) for m, line in found if m == "zoo" or m.startswith("zoo.")]


def layer_of(module: str, layers: dict[str, int]) -> int:
    """The layer of a module: that of its package (or of itself at the top level)."""
    parts = module.split(".")
    for key in (".".join(parts[:2]), parts[0]):
        if key in layers:
            return layers[key]
    raise AssertionError(f"docs/architecture.md's import direction does not place {module}")


def test_packages_import_only_from_the_layers_below_them() -> None:
    layers, exceptions = import_layers()
    surface = max(layers.values())
    upward, used = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        # The root's __init__ is the public surface (lazy names); its version is the base.
        mine = surface if source == "zoo" else layer_of(source, layers)
        for target, line in imports(path):
            if layer_of(target, layers) <= mine or target.startswith(f"{source}."):
                continue
            key = next(
                ((s, t) for s, t in exceptions if s == source and target.startswith(t)), None
            )
            if key is not None:
                used.add(key)
                continue
            upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "upward imports (see docs/architecture.md, Import direction):\n" + "\n".join(
        upward
    )
    assert used == exceptions, f"exceptions that no longer occur: {sorted(exceptions - used)}"


def test_every_package_has_its_layer() -> None:
    layers, _ = import_layers()
    packages = {f"zoo.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    modules = {f"zoo.{stem}" for stem in TOP_LEVEL - {"__init__"}}
    assert packages | modules <= layers.keys() | {"zoo"}, sorted(packages | modules - layers.keys())
