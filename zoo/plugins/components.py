"""Building components from specs: resolve the name, check the user's parameters against the
factory, call it with zoo's keywords. Errors name the plugin and the component."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.plugins.build import get_registry
from zoo.plugins.hookspecs import KEYWORDS
from zoo.plugins.registry import Component, Registry
from zoo.plugins.specs import Spec, check_params, parse_spec


def provided(kind: str) -> tuple[str, ...]:
    """Keywords zoo passes to every factory of a kind."""
    return tuple(k.name for k in KEYWORDS[kind] if k.always)


def reserved(kind: str) -> tuple[str, ...]:
    """Every keyword zoo may pass to a kind's factories: users cannot set these."""
    return tuple(k.name for k in KEYWORDS[kind])


@dataclass
class Resolved:
    """A spec resolved to its component and factory, parameters checked, nothing built yet."""

    kind: str
    spec: Spec
    component: Component
    factory: Any

    @property
    def label(self) -> str:
        return f"{self.kind} {self.component.qualified!r}"

    def build(self, **keywords: Any) -> Any:
        from zoo.plugins.specs import call_factory

        always = provided(self.kind)
        fixed = {k: v for k, v in keywords.items() if k in always}
        optional = {k: v for k, v in keywords.items() if k not in fixed}
        return call_factory(self.label, self.factory, self.spec.params, fixed, optional)

    @property
    def recorded(self) -> str:
        """The spec as a run records it: qualified (``plugin:name:k=v``), so that a plugin
        registering the same name later never changes what the run resumes or evaluates with."""
        from zoo.plugins.specs import format_spec

        return format_spec(self.component.qualified, self.spec.params)


def resolve(
    kind: str,
    text: str | Spec,
    registry: Registry | None = None,
    *,
    prefer: str | None = None,
    **params: Any,
) -> Resolved:
    """Resolve ``[plugin:]name[:k=v]`` (plus keyword ``params``) and check the parameters;
    ``prefer`` picks that plugin's component when a bare name is ambiguous."""
    registry = registry or get_registry()
    spec = text if isinstance(text, Spec) else parse_spec(text, kind=kind)
    if params:
        spec = Spec(spec.name, spec.plugin, {**spec.params, **params})
    component = registry.resolve(kind, spec.ref, prefer=prefer)
    factory = registry.factory(component)
    label = f"{kind} {component.qualified!r}"
    check_params(label, factory, spec.params, reserved(kind))
    return Resolved(kind, spec, component, factory)
