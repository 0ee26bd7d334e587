"""mkdocs build hook: fills the CLI reference page from the typer app (zoo.cli.reference)."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from zoo.cli.reference import cli_reference

    return markdown.replace(MARKER, cli_reference())
