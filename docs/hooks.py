"""mkdocs build hook: fills in what is generated from the code (zoo.cli.reference): the CLI
reference from the typer app, and the plugin contract table from zoo.plugins.hookspecs."""

from __future__ import annotations

from typing import Any

MARKERS = {
    "<!-- cli-reference -->": "cli_reference",
    "<!-- plugin-contract -->": "plugin_contract",
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    import zoo.cli.reference

    for marker, generator in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, getattr(zoo.cli.reference, generator)())
    return markdown
