"""``zoo new-plugin NAME``: a plugin package to start from, ready to install and test."""

from __future__ import annotations

from pathlib import Path

import typer

from zoo.cli.common import command, stdout


def register(app: typer.Typer) -> None:
    app.command("new-plugin")(new_plugin)


@command
def new_plugin(
    name: str = typer.Argument(..., help="Plugin name, used in qualified names (NAME:component)."),
    folder: str | None = typer.Option(
        None, "--dir", help="Where to write the package (default ./zoo-NAME); must not exist."
    ),
) -> None:
    """Write a plugin package: pyproject with the entry point, one architecture, augmentation
    and loss, tests using the zoo_plugins fixture, and a README."""
    from zoo.plugins.scaffold import create, names

    target, files = create(name, Path(folder) if folder else None)
    console = stdout()
    console.print(
        f"wrote {target}/ ({len(files)} files): plugin {name!r}, module {names(name)['module']}"
    )
    for path in sorted(files):
        console.print(f"  {path.relative_to(target)}")
    console.print(
        f"next: pip install -e {target} && pytest {target / 'tests'} && "
        f"zoo train --arch {name}_net --aug {name}_noise --loss {name}_poly1 --epochs 1"
    )
