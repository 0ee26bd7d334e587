"""Component specs as typed on the command line: ``[plugin:]name[:key=value,...]``.

Values parse as bool (``true``/``false``), None (``none``), int, float, a quoted string, a
bracketed list (``size=[32,48]``) or, failing all of those, a bare string.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError, did_you_mean

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
        raise ZooError(f"malformed {kind} {text!r}: expected [plugin:]name[:key=value,...]")
    plugin, name = (parts[0], parts[1].lower()) if len(parts) == 2 else (None, parts[0].lower())
    for label in (plugin, name):
        if label is not None and not PLUGIN_RE.match(label):
            raise ZooError(f"malformed {kind} {text!r}: names use letters, digits and _ . -")
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
            raise ZooError(f"malformed {kind} parameter {item.strip()!r}: expected key=value")
        if key in params:
            raise ZooError(f"{kind} parameter {key!r} given twice")
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
            raise ZooError(f"{what}: parameter {key!r} is set by zoo and cannot be given")
    accepted = accepted_params(factory, reserved)
    if accepted is None:
        return
    for key in params:
        if key not in accepted:
            listing = ", ".join(accepted) if accepted else "none"
            hint = did_you_mean(key, accepted)
            raise ZooError(f"{what}: unknown parameter {key!r}{hint} (accepted: {listing})")


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
        raise ZooError(f"{what} failed to build: {type(exc).__name__}: {exc}", exit_code=1) from exc
