"""``zoo list``, ``zoo plugins``, ``zoo info``: what is installed, and where it came from.

``list`` (``--pretrained`` too) and ``plugins`` read the registry cache when it is valid, so
they do not import torch or the plugins.
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import typer

from zoo.cli.common import command, print_json, stdout
from zoo.errors import ZooError, shown


def register(app: typer.Typer) -> None:
    app.command("list")(list_components)
    app.command("plugins")(plugins)
    app.command("info")(info)


@command
def list_components(
    kind: str | None = typer.Argument(
        None,
        metavar="KIND",
        help="architectures, augmentations, losses, datasets, optimizers, schedulers or callbacks.",
    ),
    filter: str | None = typer.Option(
        None,
        "--filter",
        "-f",
        metavar="GLOB",
        help="Only names matching this glob, e.g. 'resnet*'.",
    ),
    pretrained: bool = typer.Option(
        False,
        "--pretrained",
        help="List pretrained weights (NAME.TAG) instead: input size, Hub repository, licence.",
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List components with the plugin distribution each comes from; with --pretrained, the
    architectures' pretrained weights (what --pretrained and zoo.create_model can start from)."""
    from zoo.plugins.build import get_registry
    from zoo.plugins.registry import normalize_kind

    registry = get_registry()
    if pretrained:
        if kind and normalize_kind(kind) != "architecture":
            raise ZooError("--pretrained lists architectures' weights; leave out the kind")
        _list_pretrained(registry, filter, json)
        return
    found = registry.components(normalize_kind(kind) if kind else None, filter)
    conflicts = registry.conflicts()
    if json:
        print_json(
            [
                {**c.to_json(), "qualified": c.qualified, "conflict": (c.kind, c.name) in conflicts}
                for c in found
            ]
        )
        return
    from zoo.cli.table import cell, render

    console = stdout()
    rows = []
    for c in found:
        clash = (c.kind, c.name) in conflicts
        name = cell((c.name, ""), (f" (conflict: {c.qualified})" if clash else "", "yellow"))
        aliases = f" (alias: {', '.join(c.aliases)})" if c.aliases else ""
        rows.append((c.kind, name, c.source, cell((c.summary, ""), (aliases, "dim"))))
    if found:
        console.print(render(("kind", "name", "source", "summary"), rows, console.width), end="")
    counts = Counter(c.source for c in found)
    per_source = ", ".join(f"{source} {n:,}" for source, n in counts.most_common())
    noun = "component" if len(found) == 1 else "components"
    console.print(f"{len(found):,} {noun}" + (f": {per_source}" if per_source else ""))
    for kind_name, name in sorted(conflicts):
        owners = sorted(c.qualified for c in found if (c.kind, c.name) == (kind_name, name))
        if owners:
            console.print(
                f"[yellow]conflict:[/] {kind_name} {name!r} is registered by several "
                f"plugins; use {' or '.join(owners)}"
            )


def _list_pretrained(registry: Any, pattern: str | None, json: bool) -> None:
    found = registry.pretrained(pattern)
    if json:
        print_json([t.to_json() for t in found])
        return
    from zoo.cli.table import render

    console = stdout()
    rows = []
    for t in found:
        size = t.config.get("input_size") or []
        rows.append(
            (
                t.name,
                "x".join(map(str, size[1:])) if len(size) == 3 else "?",
                t.config.get("license") or "-",
                t.hub_id or "(not on the Hub)",
            )
        )
    if found:
        console.print(render(("name", "input", "license", "hub"), rows, console.width), end="")
    counts = Counter(t.component.source for t in found)
    per_source = ", ".join(f"{source} {n:,}" for source, n in counts.most_common())
    noun = "pretrained weight" if len(found) == 1 else "pretrained weights"
    console.print(f"{len(found):,} {noun}" + (f": {per_source}" if per_source else ""))


@command
def plugins(json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every plugin: distribution, version, hooks, status and any load error."""
    from zoo.plugins.build import get_registry

    infos = get_registry().plugins()
    if json:
        print_json([p.to_json() for p in infos])
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("plugin", "source", "hooks", "status"):
        table.add_column(column, overflow="fold")
    for p in infos:
        hooks = ", ".join(h.removeprefix("zoo_register_") for h in p.hooks) or "-"
        # A plugin's error and names are text, never markup: "[x]" in them must show as is.
        status = "[green]ok[/]" if p.status == "ok" else f"[red]error[/]: {escape(str(p.error))}"
        name = escape(p.name) + (" (built-in)" if p.builtin else "")
        table.add_row(name, escape(p.source), hooks, status)
    stdout().print(table)


@command
def info(
    name: str = typer.Argument(..., metavar="NAME", help="A component name, alias or plugin:name."),
    kind: str | None = typer.Option(
        None, "--kind", "-k", metavar="KIND", help="Only look in this kind."
    ),
    image_size: str | None = typer.Option(
        None,
        "--image-size",
        metavar="N|HxW",
        help="Input size for an architecture's parameter count (default: its own, else 224).",
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a component: source, parameters, docstring; for an architecture its size and
    its pretrained weights (NAME.TAG names one of them)."""
    from zoo.plugins.build import get_registry
    from zoo.plugins.registry import KINDS, normalize_kind
    from zoo.train.config import parse_image_size

    registry = get_registry()
    kinds = [normalize_kind(kind)] if kind else list(KINDS)
    found, errors = [], []
    for k in kinds:
        try:
            found.append(registry.resolve(k, name))
        except ZooError as exc:
            errors.append(exc)
    if not found:
        # Errors that name the component but not a valid form of it say more than "no such".
        ambiguous = [e for e in errors if "several plugins" in str(e) or "pretrained" in str(e)]
        raise (
            (ambiguous or errors)[0]
            if len(kinds) == 1 or ambiguous
            else ZooError(f"no component named {shown(name)}; see `zoo list`")
        )
    size = parse_image_size(image_size)
    details = [_describe(registry, c, size, name) for c in found]
    if json:
        print_json(details if len(details) > 1 else details[0])
        return
    console = stdout()
    for d in details:
        console.print(f"[bold]{d['qualified']}[/] ({d['kind']}) from {d['source']}")
        if d["aliases"]:
            console.print(f"aliases: {', '.join(d['aliases'])}")
        if "parameters_count" in d:
            console.print(
                f"parameters: {d['parameters_count']:,}  default input: "
                f"{d['default_input']}  (built for {d['built_with']})"
            )
        if d.get("pretrained"):
            console.print(_pretrained_line(d["pretrained"], d["pretrained_tags"]))
        if d["parameters"]:
            console.print(
                "accepts: "
                + ", ".join(
                    f"{p['name']}={p['default']}" if p["default"] is not None else p["name"]
                    for p in d["parameters"]
                )
            )
        else:
            console.print(
                "accepts: no parameters"
                if d["parameters"] is not None
                else "accepts: any keyword (passed through)"
            )
        if d["doc"]:
            console.print(d["doc"], markup=False)
        console.print()


def _pretrained_line(weights: dict[str, Any], tags: int) -> str:
    """What ``zoo info`` says of an architecture's pretrained weights (a tag's, or the default's
    with the number of tags)."""
    size = "x".join(map(str, weights.get("input_size") or [])) or "?"
    crop = weights.get("crop_pct")
    parts = [
        f"input {size}",
        f"crop {crop} {weights.get('crop_mode', 'center')}" if crop else None,
        weights.get("interpolation"),
        f"mean {weights.get('mean')}, std {weights.get('std')}" if weights.get("mean") else None,
        f"{weights['num_classes']} classes" if weights.get("num_classes") else None,
        f"licence {weights['license']}" if weights.get("license") else None,
    ]
    hub = f"hf-hub:{weights['hub_id']}" if weights.get("hub_id") else "not on the Hub"
    more = f" (default of {tags} tags; zoo list --pretrained)" if tags > 1 else ""
    details = "; ".join(p for p in parts if p)
    return f"pretrained: {weights['name']} from {hub}{more}\n  {details}"


def _describe(
    registry: Any, component: Any, image_size: tuple[int, int] | None, ref: str = ""
) -> dict[str, Any]:
    from zoo.plugins.components import reserved
    from zoo.plugins.specs import accepted_params

    factory = registry.factory(component)
    accepted = accepted_params(factory, reserved(component.kind))
    params = None
    if accepted is not None:
        signature = inspect.signature(factory).parameters
        params = [
            {
                "name": n,
                "default": (
                    None
                    if signature[n].default is inspect.Parameter.empty
                    else repr(signature[n].default)
                ),
                "required": signature[n].default is inspect.Parameter.empty,
            }
            for n in accepted
        ]
    detail: dict[str, Any] = {
        "kind": component.kind,
        "name": component.name,
        "qualified": component.qualified,
        "source": component.source,
        "aliases": list(component.aliases),
        "summary": component.summary,
        "doc": inspect.getdoc(factory) or "",
        "parameters": params,
    }
    if component.kind == "architecture":
        default = getattr(factory, "default_image_size", None)
        tags = registry.tags(component)
        if tags:
            weights = registry.find_pretrained(ref) if ref else tags[0]
            detail["pretrained"] = weights.to_json()
            tagged = "." in ref.rpartition(":")[2]
            detail["pretrained_tags"] = 1 if tagged else len(tags)
            size = weights.config.get("input_size")
            default = tuple(size[1:]) if size else default
        size = image_size or (tuple(default) if default else (224, 224))

        detail["parameters_count"] = _count_parameters(component.qualified, size)
        detail["default_input"] = f"3x{size[0]}x{size[1]}"
        detail["built_with"] = "1000 classes"
    return detail


def _count_parameters(qualified: str, size: tuple[int, int]) -> int:
    """Parameters of an architecture at 1000 classes, built on the meta device so that a
    billion-parameter model allocates nothing (falling back to the CPU for networks whose
    constructors compute with real data)."""
    import torch

    from zoo.plugins.components import resolve

    resolved = resolve("architecture", qualified)
    try:
        with torch.device("meta"):
            net = resolved.build(num_classes=1000, in_chans=3, image_size=size)
    except ZooError:
        net = resolved.build(num_classes=1000, in_chans=3, image_size=size)
    if not isinstance(net, torch.nn.Module):
        raise ZooError(
            f"{resolved.label} returned {type(net).__name__}, not a torch.nn.Module",
            exit_code=1,
        )
    return sum(p.numel() for p in net.parameters())
