"""The CLI reference as Markdown, generated from the typer app itself so the docs cannot drift
from the commands. The docs site's build hook (docs/hooks.py) inserts it."""

from __future__ import annotations

import inspect
from typing import Any

import typer


def cli_reference(app: typer.Typer | None = None) -> str:
    """Markdown for every command: usage, description and a table of its options."""
    import typer.main

    from zoo.cli import build_app

    group = typer.main.get_command(app or build_app())
    root = group.make_context("zoo", [], resilient_parsing=True)
    return "\n\n".join(_sections(group, root, "zoo")) + "\n"


def _sections(group: Any, parent: Any, prefix: str) -> list[str]:
    """One section per command; a command group's (``zoo runs``) after its own."""
    sections = []
    for name in group.list_commands(parent):
        command = group.get_command(parent, name)
        if command is None or command.hidden:
            continue
        ctx = command.make_context(name, [], parent=parent, resilient_parsing=True)
        sections.append(_command(command, ctx, f"{prefix} {name}"))
        if hasattr(command, "list_commands"):
            sections += _sections(command, ctx, f"{prefix} {name}")
    return sections


def _command(command: Any, ctx: Any, path: str) -> str:
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"## `{path}`", "", "```text", f"{path} {usage}", "```", ""]
    if command.help:
        lines += [inspect.cleandoc(command.help), ""]
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)  # what `--help` prints: (names, description)
        if record:
            names, text = (_cell(part) for part in record)
            rows.append(f"| `{names}` | {text} |")
    if rows:
        lines += ["| option | description |", "| --- | --- |", *rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def plugin_contract() -> str:
    """The hooks' table for docs/plugins.md, from ``zoo.plugins.hookspecs`` (the reference):
    each kind's hook, the keywords zoo passes to its factories, and what a factory returns."""
    from zoo.plugins import hookspecs

    rows = [
        "| kind | hook | zoo passes | a factory returns |",
        "| --- | --- | --- | --- |",
    ]
    for kind, hook in hookspecs.HOOKS.items():
        keywords = [
            f"`{k.name}` ({k.doc}{'' if k.always else '; only if the factory declares it'})"
            for k in hookspecs.KEYWORDS[kind]
        ]
        returns = _returns(inspect.getdoc(getattr(hookspecs, hook)) or "")
        rows.append(
            f"| {kind} | `{hook}` | {_cell('; '.join(keywords) or 'nothing')} | {_cell(returns)} |"
        )
    return "\n".join(rows) + "\n"


def data_source_contract() -> str:
    """The data-source protocol's tables for docs/plugins.md, from ``zoo.plugins.hookspecs``:
    the fields of ``data_source`` and what a split may expose."""
    from zoo.plugins import hookspecs

    rows = ["| `data_source` field | what it says |", "| --- | --- |"]
    rows += [f"| `{name}` | {_cell(doc)} |" for name, doc in hookspecs.DATA_SOURCE.items()]
    rows += ["", "| a split may expose | what zoo does with it |", "| --- | --- |"]
    rows += [f"| `{name}` | {_cell(doc)} |" for name, doc in hookspecs.SPLIT_EXPOSES.items()]
    return "\n".join(rows) + "\n"


def _returns(doc: str) -> str:
    """The first sentence of a hook docstring's ``Returns ...`` paragraph."""
    for paragraph in doc.split("\n\n"):
        text = " ".join(paragraph.split())
        if text.startswith("Returns "):
            sentence = text.removeprefix("Returns ").split(". ")[0].split(": ")[0]
            return sentence.rstrip(".")
    return ""
