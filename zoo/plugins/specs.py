"""Component specs as typed on the command line: ``[plugin:]name[:key=value,...]``.

Values parse as bool (``true``/``false``), None (``none``), int, float, a quoted string, a
bracketed list (``size=[32,48]``) or, failing all of those, a bare string.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError, did_you_mean, shown

NAME_RE = re.compile(r"^[a-z0-9_.-]+$")
PLUGIN_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Spec:
    """A parsed component reference: optional plugin qualifier, name and user parameters."""

    name: str
    plugin: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """The name as written, qualified when a plugin was given."""
        return f"{self.plugin}:{self.name}" if self.plugin else self.name

    def __str__(self) -> str:
        return format_spec(self.ref, self.params)


def parse_spec(text: str, *, kind: str = "component") -> Spec:
    """Parse ``[plugin:]name[:k=v,...]``; raise ZooError on malformed text."""
    text = text.strip()
    if not text:
        raise ZooError(f"empty {kind} name")
    head, params = text, {}
    # The parameter block is everything after the first ':' that is followed by 'key='.
    match = re.search(r":(?=[A-Za-z_][A-Za-z0-9_]*\s*=)", text)
    if match:
        head, params = text[: match.start()], parse_params(text[match.end() :], kind=kind)
    parts = head.split(":")
    if len(parts) > 2 or not all(parts):
        raise ZooError(f"malformed {kind} {shown(text)}: expected [plugin:]name[:key=value,...]")
    plugin, name = (parts[0], parts[1].lower()) if len(parts) == 2 else (None, parts[0].lower())
    for label in (plugin, name):
        if label is not None and not PLUGIN_RE.match(label):
            raise ZooError(f"malformed {kind} {shown(text)}: names use letters, digits and _ . -")
    return Spec(name=name, plugin=plugin, params=params)


def parse_params(text: str, *, kind: str = "component") -> dict[str, Any]:
    """Parse ``k=v,k2=v2`` into a dict of typed values."""
    params: dict[str, Any] = {}
    for item in _split_top_level(text):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ZooError(f"malformed {kind} parameter {shown(item.strip())}: expected key=value")
        if key in params:
            raise ZooError(f"{kind} parameter {shown(key)} given twice")
        params[key] = parse_value(raw.strip())
    return params


def parse_value(raw: str) -> Any:
    """Type one ``k=v`` value: bool, None, int, float, quoted string, list or bare string."""
    low = raw.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if raw.startswith("[") and raw.endswith("]"):
        return [parse_value(v.strip()) for v in _split_top_level(raw[1:-1]) if v.strip()]
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def format_value(value: Any) -> str:
    """The inverse of parse_value, so a resolved spec can be written back as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, str):
        parsed = parse_value(value)
        if not isinstance(parsed, str) or parsed != value or re.search(r"[,\[\]]", value):
            return f'"{value}"'
    return str(value)


def format_spec(ref: str, params: Mapping[str, Any]) -> str:
    """``ref:k=v,...`` (just ``ref`` without parameters)."""
    if not params:
        return ref
    return ref + ":" + ",".join(f"{k}={format_value(v)}" for k, v in params.items())


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def accepted_params(factory: Callable[..., Any], reserved: Iterable[str] = ()) -> list[str] | None:
    """Keyword parameters a user may set on ``factory``; None if it takes ``**kwargs``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    names = []
    for p in signature.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.append(p.name)
    reserved = set(reserved)
    return [n for n in names if n not in reserved]


def check_params(
    what: str, factory: Callable[..., Any], params: Mapping[str, Any], reserved: Iterable[str]
) -> None:
    """Refuse user parameters the factory does not accept, listing the accepted ones."""
    reserved = set(reserved)
    for key in params:
        if key in reserved:
            raise ZooError(f"{what}: parameter {shown(key)} is set by zoo and cannot be given")
    accepted = accepted_params(factory, reserved)
    if accepted is not None:
        for key in params:
            if key not in accepted:
                listing = ", ".join(accepted) if accepted else "none"
                hint = did_you_mean(key, accepted)
                raise ZooError(
                    f"{what}: unknown parameter {shown(key)}{hint} (accepted: {listing})"
                )
    check_types(what, factory, params)


def check_types(what: str, factory: Callable[..., Any], params: Mapping[str, Any]) -> None:
    """Refuse user values of the wrong type before the factory sees them (where it would fail
    deep inside torch, or not at all): each is checked against the parameter's annotation
    (int, float, bool, str, lists, tuples, optional and union types; an int is a float), else
    its default's type; parameters with neither take anything. Floats must be finite."""
    for name, param in _parameters(factory).items():
        if name not in params:
            continue
        value = params[name]
        expected = param.annotation
        if expected is inspect.Parameter.empty or isinstance(expected, str):
            expected = _default_type(param.default)
        if expected is None or _fits(value, expected) is not False:
            if isinstance(value, float) and not math.isfinite(value):
                raise ZooError(f"{what}: parameter {name} must be a finite number, got {value}")
            continue
        hint = f' (quote it for text: {name}="{value}")' if _fits(str(value), expected) else ""
        raise ZooError(
            f"{what}: parameter {name} must be {_type_name(expected)}, got {shown(value)}{hint}"
        )


def _parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The factory's parameters with their annotations evaluated where possible (modules
    using ``from __future__ import annotations`` keep them as strings)."""
    for evaluate in (True, False):
        try:
            return dict(inspect.signature(factory, eval_str=evaluate).parameters)
        except Exception:  # an annotation naming what only type checkers import
            continue
    return {}


def _default_type(default: Any) -> Any:
    """What a parameter without annotation takes, judged by its default: numbers for a number
    (many take 0 for a float), the default's type for bools, strings and sequences."""
    if default is inspect.Parameter.empty or default is None:
        return None
    if isinstance(default, bool):
        return bool
    if isinstance(default, numbers.Real):
        return float
    if isinstance(default, str):
        return str
    if isinstance(default, (list, tuple)):
        return list
    return None


def _fits(value: Any, expected: Any) -> bool | None:
    """Whether ``value`` fits the type ``expected``; None when that type is not one zoo checks."""
    import types
    import typing

    if expected is Any or expected is object:
        return True
    if expected is None or expected is type(None):
        return value is None
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        verdicts = [_fits(value, a) for a in args]
        return True if True in verdicts else (None if None in verdicts else False)
    if origin is typing.Literal:
        return value in args
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    sequence = origin or expected
    if sequence in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        items = [a for a in args if a is not Ellipsis]
        if not items:
            return True
        verdicts = [
            _fits(v, items[i] if len(items) == len(value) else items[0])
            for i, v in enumerate(value)
        ]
        return False if False in verdicts else (None if None in verdicts else True)
    if expected is dict or origin is dict:
        return isinstance(value, dict)
    return None


def _type_name(expected: Any) -> str:
    """``int``, ``float | None``, ``list[int]``: a type as annotations write it."""
    import typing

    if isinstance(expected, type) and not typing.get_args(expected):
        return "a list" if expected is list else expected.__name__
    return str(expected).replace("typing.", "").replace("NoneType", "None")


def call_factory(
    what: str,
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    provided: Mapping[str, Any],
    optional: Mapping[str, Any] = {},
) -> Any:
    """Call a component factory with zoo's keywords and the user's checked parameters.

    ``provided`` keywords are always passed; ``optional`` ones only when the factory declares
    them. Any exception from the factory becomes a ZooError naming the component, so a broken
    plugin is reported as such instead of as a traceback.
    """
    check_params(what, factory, params, list(provided) + list(optional))
    accepted = accepted_params(factory)
    extra = {k: v for k, v in optional.items() if accepted is not None and k in accepted}
    try:
        return factory(**provided, **extra, **params)
    except ZooError:
        raise
    except Exception as exc:  # a plugin's factory may raise anything; report it as its own
        raise ZooError(
            f"{what} failed to build: {type(exc).__name__}: "
            f"{shown(str(exc), quote=False, limit=1000)}",
            exit_code=1,
        ) from exc
