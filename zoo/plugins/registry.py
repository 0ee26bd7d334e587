"""The registry: every component's name, kind and origin, and name resolution.

The index can come from the on-disk cache, in which case factories are fetched by loading only
the plugin that provides the component. Two plugins may register the same name: both are kept,
the bare name is then ambiguous and ``plugin:name`` picks one.

Architectures may come with pretrained weights (``register(..., extra={"pretrained": [...]})``):
``name.tag`` (timm's ``resnet50.a1_in1k``) then resolves to the architecture ``name``, and
``find_pretrained`` says where the weights of that tag are and what input they expect.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from zoo.errors import ZooError, did_you_mean, shown
from zoo.plugins.hookspecs import HOOKS

KINDS: tuple[str, ...] = tuple(HOOKS)


@dataclass(frozen=True)
class Component:
    """One registered component, without its factory (so it can be cached as JSON)."""

    kind: str
    name: str
    plugin: str
    source: str
    summary: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        """``plugin:name``, which resolves even when the bare name is ambiguous."""
        return f"{self.plugin}:{self.name}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["aliases"] = list(self.aliases)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Component:
        return cls(**{**data, "aliases": tuple(data.get("aliases", ()))})


@dataclass
class PluginInfo:
    """A plugin's load status, as ``zoo plugins`` shows it (and the cache stores it)."""

    name: str
    source: str
    module: str | None
    dist: str | None
    version: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pretrained:
    """Pretrained weights of an architecture, as its plugin registered them: a tag, the Hugging
    Face Hub repository (``hub_id``) and how the weights were trained (``input_size``, ``mean``,
    ``std``, ``crop_pct``, ``interpolation``, ``num_classes``, ``license``)."""

    component: Component
    tag: str
    config: dict[str, Any] = field(compare=False)
    default: bool = False  # the weights a bare architecture name stands for

    @property
    def name(self) -> str:
        """``architecture.tag``, as timm names it."""
        return f"{self.component.name}.{self.tag}"

    @property
    def qualified(self) -> str:
        return f"{self.component.plugin}:{self.name}"

    @property
    def hub_id(self) -> str | None:
        hub = self.config.get("hub_id")
        return hub if isinstance(hub, str) and hub else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "qualified": self.qualified,
            "architecture": self.component.qualified,
            "source": self.component.source,
            "default": self.default,
            **self.config,
        }


class Loader(Protocol):
    """What the registry needs from plugins.PluginLoader to fetch factories lazily."""

    info: dict[str, PluginInfo]
    factories: dict[tuple[str, str, str], Callable[..., Any]]

    def load(self, name: str) -> list[Component]: ...


def describe(obj: Any) -> str:
    """The first line of an object's docstring (its summary in ``zoo list``)."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Components by kind, their plugins' status, and the factories behind them."""

    def __init__(
        self,
        components: Iterable[Component],
        plugins: Iterable[PluginInfo],
        loader: Loader,
        on_stale: Callable[[], None] | None = None,
        extras: Callable[[], dict[tuple[str, str, str], dict[str, Any]]] | None = None,
        key: str = "",
    ) -> None:
        # The registry cache's key: it changes whenever what the plugins register may change,
        # so other caches of facts about the components can be keyed by it ("": not cacheable).
        self.key = key
        self._components = list(components)
        self._plugins = list(plugins)
        self._loader = loader
        self._on_stale = on_stale
        self._load_extras = extras
        self._extras: dict[tuple[str, str, str], dict[str, Any]] | None = None

    def plugins(self) -> list[PluginInfo]:
        return list(self._plugins)

    def components(self, kind: str | None = None, pattern: str | None = None) -> list[Component]:
        """Components of one kind (all kinds when None), optionally filtered by a glob."""
        if kind is not None:
            check_kind(kind)
        found = [c for c in self._components if kind is None or c.kind == kind]
        if pattern:
            found = [c for c in found if _matches(c, pattern)]
        return sorted(found, key=lambda c: (KINDS.index(c.kind), c.name, c.plugin))

    def conflicts(self) -> set[tuple[str, str]]:
        """``(kind, name)`` pairs registered by more than one plugin."""
        owners: dict[tuple[str, str], set[str]] = {}
        for c in self._components:
            owners.setdefault((c.kind, c.name), set()).add(c.plugin)
        return {key for key, plugins in owners.items() if len(plugins) > 1}

    def resolve(self, kind: str, ref: str, *, prefer: str | None = None) -> Component:
        """The component named ``ref`` (bare name, alias or ``plugin:name``) of this kind.

        A bare name several plugins register is ambiguous; with ``prefer``, the one that
        plugin registers is taken instead (how names saved before runs recorded qualified
        ones resolve: to the built-in a plugin shadowed later)."""
        check_kind(kind)
        of_kind = [c for c in self._components if c.kind == kind]
        plugin, _, name = ref.rpartition(":")
        name = name.lower()
        if plugin:
            mine = [c for c in of_kind if c.plugin == plugin]
            if not mine:
                plugins = sorted({c.plugin for c in of_kind})
                raise ZooError(
                    f"no plugin {shown(plugin)} provides {kind}s{did_you_mean(plugin, plugins)}"
                    f" (plugins with {kind}s: {', '.join(plugins) or 'none'})"
                )
            of_kind = mine
        matches = [c for c in of_kind if c.name == name] or [
            c for c in of_kind if name in c.aliases
        ]
        if not matches and kind == "architecture" and "." in name:
            tagged = self._tagged(of_kind, name)
            if tagged is not None:
                return tagged
        if len(matches) == 1:
            return matches[0]
        preferred = [c for c in matches if c.plugin == prefer]
        if len(preferred) == 1:
            return preferred[0]
        if matches:
            choices = ", ".join(sorted(c.qualified for c in matches))
            raise ZooError(
                f"{kind} {shown(name)} is provided by several plugins; use one of: {choices}"
            )
        names = sorted({n for c in of_kind for n in (c.name, *c.aliases)})
        hint = did_you_mean(name, names)
        listing = "" if hint else f"; see `zoo list {kind}`"
        raise ZooError(f"unknown {kind} {shown(ref)}{hint}{listing}")

    def extra(self, component: Component) -> dict[str, Any]:
        """What the plugin registered beside the component (``extra=``), or ``{}``."""
        if self._extras is None:
            self._extras = self._load_extras() if self._load_extras else {}
        return self._extras.get((component.kind, component.plugin, component.name), {})

    def tags(self, component: Component) -> list[Pretrained]:
        """An architecture's pretrained weights, its default first."""
        entries = self.extra(component).get("pretrained") or []
        return [
            Pretrained(component, str(e["tag"]), dict(e), default=i == 0)
            for i, e in enumerate(entries)
            if isinstance(e, dict) and e.get("tag")
        ]

    def pretrained(self, pattern: str | None = None) -> list[Pretrained]:
        """Every architecture's pretrained weights (``name.tag``), optionally filtered by a glob
        on ``name.tag`` or ``plugin:name.tag``."""
        found = [t for c in self.components("architecture") for t in self.tags(c)]
        if pattern:
            glob = pattern.lower()
            found = [
                t
                for t in found
                if fnmatch.fnmatchcase(t.name, glob) or fnmatch.fnmatchcase(t.qualified, glob)
            ]
        return sorted(found, key=lambda t: (t.name, t.component.plugin))

    def find_pretrained(self, ref: str) -> Pretrained:
        """The weights ``[plugin:]name[.tag]`` names: that tag, or the architecture's default."""
        component = self.resolve("architecture", ref)
        name = ref.rpartition(":")[2].lower()
        tags = self.tags(component)
        if not tags:
            raise ZooError(
                f"architecture {component.qualified!r} has no pretrained weights; see "
                "`zoo list --pretrained` for those that do"
            )
        if name == component.name or name in component.aliases:
            return tags[0]
        tag = name.partition(".")[2]
        return next(t for t in tags if t.tag == tag)  # resolve() checked that it exists

    def _tagged(self, of_kind: list[Component], name: str) -> Component | None:
        """The architecture of ``name.tag`` when it has that pretrained tag; ZooError naming
        its tags when it has others; None when ``name`` is not an architecture."""
        base, _, tag = name.partition(".")
        bases = [c for c in of_kind if c.name == base]
        if len(bases) != 1:
            return None
        known = [t.tag for t in self.tags(bases[0])]
        if tag in known:
            return bases[0]
        if not known:
            raise ZooError(f"architecture {bases[0].qualified!r} has no pretrained weights")
        raise ZooError(
            f"architecture {bases[0].qualified!r} has no pretrained tag {shown(tag)}"
            f"{did_you_mean(tag, known)}; see `zoo list --pretrained --filter '{base}.*'`"
        )

    def factory(self, component: Component) -> Callable[..., Any]:
        """The factory behind a component, loading its plugin if that has not happened yet."""
        key = (component.kind, component.plugin, component.name)
        if key not in self._loader.factories and component.plugin not in self._loader.info:
            self._loader.load(component.plugin)
        info = self._loader.info.get(component.plugin)
        if info is not None and info.status != "ok":
            raise ZooError(f"plugin {component.plugin!r} failed to load: {info.error}")
        try:
            return self._loader.factories[key]
        except KeyError:
            if self._on_stale is not None:
                self._on_stale()
            raise ZooError(
                f"plugin {component.plugin!r} no longer registers {component.kind} "
                f"{component.name!r}; the registry cache is stale, run the command again"
            ) from None


_KIND_ALIASES = {"arch": "architecture", "aug": "augmentation", "optim": "optimizer"}


def normalize_kind(text: str) -> str:
    """Accept ``architectures``, ``arch``, ``losses``... for a kind; refuse anything else."""
    word = text.strip().lower().replace("-", "_")
    for candidate in (word, word.removesuffix("es"), word.removesuffix("s")):
        candidate = _KIND_ALIASES.get(candidate, candidate)
        if candidate in KINDS:
            return candidate
    raise ZooError(f"unknown component kind {shown(text)}{did_you_mean(word, KINDS)}")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ZooError(f"unknown component kind {shown(kind)}{did_you_mean(kind, KINDS)}")


def _matches(component: Component, pattern: str) -> bool:
    pattern = pattern.lower()
    names = (component.name, component.qualified, *component.aliases)
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)
