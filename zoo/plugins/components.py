"""Building components from specs: resolve the name, check the user's parameters against the
factory, call it with zoo's keywords. Errors name the plugin and the component."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.plugins.build import get_registry
from zoo.plugins.registry import Component, Registry
from zoo.plugins.specs import Spec, check_params, parse_spec

# Keywords zoo passes to every factory of a kind; users cannot set them.
PROVIDED: dict[str, tuple[str, ...]] = {
    "architecture": ("num_classes", "in_chans", "image_size"),
    "augmentation": (),
    "loss": (),
    "dataset": ("image_size", "seed", "val_fraction"),
    "optimizer": ("params", "lr"),
    "scheduler": ("optimizer", "epochs", "steps_per_epoch"),
}
# Keywords zoo passes only to factories that declare them.
OPTIONAL: dict[str, tuple[str, ...]] = {
    "architecture": (),
    "augmentation": ("num_classes",),
    "loss": ("num_classes", "weight"),
    "dataset": ("download",),
    "optimizer": (),
    "scheduler": ("monitor_mode",),
}


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

    def build(self, **provided: Any) -> Any:
        from zoo.plugins.specs import call_factory

        fixed = {k: v for k, v in provided.items() if k in PROVIDED[self.kind]}
        optional = {k: v for k, v in provided.items() if k not in fixed}
        return call_factory(self.label, self.factory, self.spec.params, fixed, optional)


def resolve(
    kind: str, text: str | Spec, registry: Registry | None = None, **params: Any
) -> Resolved:
    """Resolve ``[plugin:]name[:k=v]`` (plus keyword ``params``) and check the parameters."""
    registry = registry or get_registry()
    spec = text if isinstance(text, Spec) else parse_spec(text, kind=kind)
    if params:
        spec = Spec(spec.name, spec.plugin, {**spec.params, **params})
    component = registry.resolve(kind, spec.ref)
    factory = registry.factory(component)
    label = f"{kind} {component.qualified!r}"
    check_params(label, factory, spec.params, PROVIDED[kind] + OPTIONAL[kind])
    return Resolved(kind, spec, component, factory)
