"""The ``[search]`` table of a ``zoo tune`` config: which settings a study varies, and how.

Each key names a ``zoo train`` setting, or a parameter of a component setting:

- ``lr = {low = 1e-4, high = 1e-1, log = true}``: a float range (``step`` optional);
- ``epochs = {low = 2, high = 8, step = 2}``: an int range, for int settings;
- ``arch = ["simplecnn", "resnet18"]``: a list of choices (any setting; a list setting such as
  ``aug`` takes lists: ``aug = [[], ["hflip"], ["hflip", "rotate:degrees=15"]]``);
- ``"loss.label_smoothing" = {low = 0.0, high = 0.2}``: a parameter merged into the spec of a
  component setting (``arch``, ``data``, ``loss``, ``optimizer``, ``scheduler``), whichever
  component it names; ``"aug.rotate.degrees" = [10, 20]`` sets a parameter of the augmentation
  named ``rotate`` in the ``aug`` list.

Everything is checked before the first trial (``check``): every choice is resolved through the
plugin registry, and every component parameter against the factories that would receive it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from zoo.errors import ZooError, did_you_mean, shown
from zoo.plugins.specs import format_spec, parse_spec
from zoo.train.config import FIELDS, TrainConfig, from_mapping, validate

RANGE_KEYS = ("low", "high", "log", "step")
# Settings whose value is one component spec, and the kind of component they name.
COMPONENTS = {
    "arch": "architecture",
    "data": "dataset",
    "loss": "loss",
    "optimizer": "optimizer",
    "scheduler": "scheduler",
}
# Settings whose value is a list of component specs.
COMPONENT_LISTS = {"aug": "augmentation", "callback": "callback"}
# Settings a study cannot vary, and why.
FIXED = {
    "out": "each trial writes into its own DIR/trial-NNNN",
    "resume": "zoo tune resumes trials itself",
    "overwrite": "zoo tune never replaces a trial's run",
    "monitor": "the study's objective and its direction come from it",
    "nproc": "each trial runs in one process (use --jobs for parallel trials)",
    "threads": "zoo tune shares the cores out between --jobs",
}


@dataclass(frozen=True)
class Dimension:
    """One searched value: a range (``kind`` float or int) or a list of choices."""

    name: str  # the key as written in [search]
    field: str  # the zoo train setting it changes
    param: str | None  # a component parameter, or None for the setting itself
    component: str | None  # for list settings: the name of the component in the list
    kind: str  # "float", "int" or "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def encoded(self) -> list[Any]:
        """The choices as Optuna stores them: scalars as they are, lists as JSON text."""
        return [encode(c) for c in self.choices]

    def suggest(self, trial: Any) -> Any:
        """Draw this dimension's value for an Optuna trial (decoded)."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            step = int(self.step) if self.step else 1
            low, high = int(self.low), int(self.high)
            return trial.suggest_int(self.name, low, high, step=step, log=self.log)
        encoded = self.encoded()
        value = trial.suggest_categorical(self.name, encoded)
        return self.choices[encoded.index(value)]

    def decode(self, value: Any) -> Any:
        """A stored Optuna parameter back to the setting's value."""
        if self.kind != "choice":
            return value
        return self.choices[self.encoded().index(value)]


def encode(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


@dataclass
class SearchSpace:
    """The parsed ``[search]`` table, in the order written."""

    dimensions: list[Dimension]
    where: str

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Every dimension's value for an Optuna trial, by key (decoded)."""
        return {d.name: d.suggest(trial) for d in self.dimensions}

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        by_name = {d.name: d for d in self.dimensions}
        return {k: by_name[k].decode(v) if k in by_name else v for k, v in params.items()}

    def apply(self, base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
        """The trial's configuration: settings first, then component parameters merged into
        the (possibly chosen) component specs."""
        settings = {d.field: values[d.name] for d in self.dimensions if d.param is None}
        cfg = from_mapping(settings, base=base, where=self.where) if settings else base
        params: dict[str, Any] = {}
        for d in self.dimensions:
            if d.param is None:
                continue
            current = params.get(d.field, component_of(cfg, d.field))
            params[d.field] = _with_param(current, d, values[d.name])
        return from_mapping(params, base=cfg, where=self.where) if params else cfg

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the choices, in the order written (the last key varies
        fastest), as Optuna parameters."""
        ranges = [d.name for d in self.dimensions if d.kind != "choice"]
        if ranges:
            raise ZooError(
                f"{self.where}: --sampler grid takes lists of choices; "
                f"{', '.join(ranges)} {'is a range' if len(ranges) == 1 else 'are ranges'}"
            )
        names = [d.name for d in self.dimensions]
        combos = itertools.product(*(d.encoded() for d in self.dimensions))
        return [dict(zip(names, combo, strict=True)) for combo in combos]

    def check(self, base: TrainConfig) -> None:
        """Refuse, before any trial starts, every value a trial could not run with."""
        from zoo.train.parts import resolve_components

        validate(base)
        resolve_components(base)
        by_field = {d.field: d for d in self.dimensions if d.param is None}
        for d in self.dimensions:
            where = f"{self.where}: [search] {d.name}"
            if d.param is None:
                for value in _samples(d):
                    try:
                        cfg = from_mapping({d.field: value}, base=base, where=where)
                        validate(cfg)
                    except ZooError as exc:
                        raise ZooError(_prefixed(where, exc)) from None
                    _check_components(d.field, getattr(cfg, d.field), where)
            else:
                chosen = by_field.get(d.field)
                specs = [component_of(base, d.field)]
                if chosen:
                    specs = [
                        component_of(from_mapping({d.field: c}, base=base), d.field)
                        for c in chosen.choices
                    ]
                for spec in specs:
                    for value in _samples(d):
                        _check_param(d, spec, value, where)


def _prefixed(where: str, exc: ZooError) -> str:
    text = str(exc)
    # from_mapping's own messages already name where they come from
    return text if text.startswith(where) else f"{where}: {text}"


def parse_search(table: Any, where: str) -> SearchSpace:
    """Read the ``[search]`` table: its keys, and the shape of each value."""
    if not isinstance(table, dict):
        raise ZooError(f"{where}: [search] must be a table of settings to vary")
    if not table:
        raise ZooError(f"{where}: [search] is empty: name at least one setting to vary")
    flat: dict[str, Any] = {}
    for key, value in _flatten(table, ""):
        if key in flat:
            raise ZooError(f"{where}: [search] {key} is given twice")
        flat[key] = value
    return SearchSpace([_dimension(key, value, where) for key, value in flat.items()], where)


def _flatten(table: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """TOML reads an unquoted ``loss.label_smoothing = ...`` as a table ``loss`` holding
    ``label_smoothing``: such tables (whose values are all tables or lists) become dotted keys,
    as if quoted. A range is a table of numbers, so it stays one value."""
    for key, value in table.items():
        name = f"{prefix}{key}"
        if (
            isinstance(value, dict)
            and value
            and all(isinstance(v, (dict, list)) for v in value.values())
        ):
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _dimension(key: str, value: Any, where: str) -> Dimension:
    label = f"{where}: [search] {key}"
    field, param, component = _target(key, label)
    if isinstance(value, list):
        if not value:
            raise ZooError(f"{label}: the list of choices is empty")
        if param is None and field in COMPONENT_LISTS:
            # a choice of a list setting is a list; a string alone is a one-item list
            value = [v if isinstance(v, list) else [v] for v in value]
        return Dimension(key, field, param, component, "choice", choices=tuple(value))
    if isinstance(value, dict):
        return _range(key, field, param, component, value, label)
    raise ZooError(
        f"{label}: expected a list of choices or a range such as "
        f"{{low = 1e-4, high = 1e-1, log = true}}, got {shown(value)}"
    )


def _target(key: str, label: str) -> tuple[str, str | None, str | None]:
    """``lr`` -> (lr, None, None); ``loss.label_smoothing`` -> (loss, label_smoothing, None);
    ``aug.rotate.degrees`` -> (aug, degrees, rotate)."""
    parts = key.split(".")
    field = parts[0].replace("-", "_")
    searchable = [f for f in FIELDS if f not in FIXED]
    if field not in FIELDS:
        hints = [*searchable, *(f"{c}.PARAM" for c in COMPONENTS)]
        raise ZooError(f"{label}: unknown setting {shown(parts[0])}{did_you_mean(field, hints)}")
    if field in FIXED:
        raise ZooError(f"{label}: {field} cannot be searched: {FIXED[field]}")
    if len(parts) == 1:
        return field, None, None
    if field in COMPONENTS and len(parts) == 2 and parts[1]:
        return field, parts[1], None
    if field in COMPONENT_LISTS and len(parts) == 3 and all(parts[1:]):
        return field, parts[2], parts[1].lower()
    if field in COMPONENTS:
        raise ZooError(f"{label}: a component parameter is written {field}.PARAM")
    if field in COMPONENT_LISTS:
        raise ZooError(f"{label}: a parameter of one of the {field} list is {field}.NAME.PARAM")
    raise ZooError(
        f"{label}: {field} is not a component setting, so it has no parameters "
        f"(those are {', '.join([*COMPONENTS, *COMPONENT_LISTS])})"
    )


def _range(
    key: str, field: str, param: str | None, component: str | None, table: dict, label: str
) -> Dimension:
    for name in table:
        if name not in RANGE_KEYS:
            raise ZooError(
                f"{label}: unknown range key {shown(name)}{did_you_mean(name, RANGE_KEYS)} "
                f"(a range has {', '.join(RANGE_KEYS)})"
            )
    for name in ("low", "high"):
        if name not in table:
            raise ZooError(f"{label}: a range needs low and high")
        if isinstance(table[name], bool) or not isinstance(table[name], (int, float)):
            raise ZooError(f"{label}: {name} must be a number, got {shown(table[name])}")
    low, high = table["low"], table["high"]
    log, step = table.get("log", False), table.get("step")
    if not isinstance(log, bool):
        raise ZooError(f"{label}: log must be true or false, got {shown(log)}")
    if param is None:
        base = str(FIELDS[field].type).replace(" | None", "")
        if base not in ("int", "float"):
            raise ZooError(f"{label}: {field} is not a number: give a list of choices instead")
        kind = base
    else:  # a component parameter: ints when both ends are ints
        kind = (
            "int"
            if all(isinstance(v, int) for v in (low, high)) and not isinstance(step, float)
            else "float"
        )
    if kind == "int":
        for name, v in (("low", low), ("high", high), ("step", step)):
            if v is not None and not float(v).is_integer():
                raise ZooError(f"{label}: {field} is an integer setting, so {name} must be one")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ZooError(f"{label}: low and high must be finite")
    if low > high:
        raise ZooError(f"{label}: the range is inverted (low {low} > high {high})")
    if low == high:
        raise ZooError(f"{label}: the range is empty (low = high = {low}); give a list instead")
    if log and low <= 0:
        raise ZooError(f"{label}: a log range needs low > 0, got {low}")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise ZooError(f"{label}: step must be a positive number, got {shown(step)}")
        if log and (kind == "float" or step != 1):
            raise ZooError(f"{label}: a log range takes no step")
        if step > high - low:
            raise ZooError(f"{label}: step {step} is larger than the range")
    return Dimension(
        key,
        field,
        param,
        component,
        kind,
        low=int(low) if kind == "int" else float(low),
        high=int(high) if kind == "int" else float(high),
        log=log,
        step=step,
    )


def _samples(d: Dimension) -> list[Any]:
    """The values that stand for a dimension when checking it: both ends, or every choice."""
    return [d.low, d.high] if d.kind != "choice" else list(d.choices)


def _resolve(kind: str, text: str) -> Any:
    """A component setting resolved (``--data``'s forms through the data-source protocol)."""
    from zoo.data.source import resolve_data
    from zoo.plugins.components import resolve

    return resolve_data(text) if kind == "dataset" else resolve(kind, text)


def _check_components(field: str, value: Any, where: str) -> None:
    from zoo.plugins.components import resolve

    try:
        if field in COMPONENTS:
            _resolve(COMPONENTS[field], value)
        elif field in COMPONENT_LISTS:
            for spec in value:
                resolve(COMPONENT_LISTS[field], spec)
    except ZooError as exc:
        raise ZooError(f"{where}: {exc}", exit_code=exc.exit_code) from None


def _check_param(d: Dimension, spec: Any, value: Any, where: str) -> None:
    """The component(s) ``spec`` names must accept the parameter ``d`` sets."""
    from zoo.plugins.components import resolve

    kind = COMPONENTS.get(d.field) or COMPONENT_LISTS[d.field]
    try:
        if d.field in COMPONENTS:
            _resolve(kind, _with_param(str(spec), d, value))
            if d.field == "arch":
                _check_kwargs_architecture(d, str(spec), value, where)
            return
        items = spec if isinstance(spec, list) else [spec]
        if not any(parse_spec(s, kind=kind).name == d.component for s in items):
            listed = ", ".join(items) if items else "empty"
            raise ZooError(f"no {kind} named {shown(d.component)} in {d.field} ({listed})")
        for s in _with_param(items, d, value):
            resolve(kind, s)
    except ZooError as exc:
        raise ZooError(f"{where}: {exc}", exit_code=exc.exit_code) from None


def _check_kwargs_architecture(d: Dimension, spec: str, value: Any, where: str) -> None:
    """An architecture factory taking ``**kwargs`` (timm's) cannot say which parameters it
    accepts: build it on the meta device (no memory, no weights) and look for the refusal."""
    import torch

    from zoo.plugins.components import resolve
    from zoo.plugins.specs import accepted_params

    resolved = resolve("architecture", _with_param(spec, d, value))
    if accepted_params(resolved.factory) is not None:
        return
    try:
        with torch.device("meta"):
            resolved.build(num_classes=2, in_chans=3, image_size=(32, 32))
    except ZooError as exc:
        if exc.exit_code == 2:  # the plugin's own refusal of the parameters
            raise ZooError(f"{where}: {exc}") from None
        if f"unexpected keyword argument '{d.param}'" in str(exc):
            raise ZooError(
                f"{where}: {resolved.label}: unknown parameter {shown(d.param)}"
            ) from None
        # any other failure at this made-up size is left to the trial, which reports it


def component_of(cfg: TrainConfig, field: str) -> Any:
    """The spec (or specs) of ``field`` a trial starts from: a loss left to the task is the
    default loss of ``--task`` (single-label when the data is to decide), so that a search of
    its parameters has a loss to set them on."""
    value = getattr(cfg, field)
    if field == "loss" and value is None:
        from zoo.labeling.task import SINGLE, parse_task, task_named

        return task_named(parse_task(cfg.task) or SINGLE).default_loss
    return value


def _with_param(current: Any, d: Dimension, value: Any) -> Any:
    """``current`` (a spec, or a list of specs) with ``d.param`` set to ``value``."""
    kind = COMPONENTS.get(d.field) or COMPONENT_LISTS[d.field]
    if d.field in COMPONENTS:
        text = _resolve(kind, str(current)).recorded if kind == "dataset" else str(current)
        spec = parse_spec(text, kind=kind)
        return format_spec(spec.ref, {**spec.params, d.param: value})
    out = []
    for text in current:
        spec = parse_spec(text, kind=kind)
        out.append(
            format_spec(spec.ref, {**spec.params, d.param: value})
            if spec.name == d.component
            else text
        )
    return out
