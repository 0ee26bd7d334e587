"""The data-source protocol, engine side: which source reads a ``--data`` string, what it
proposes and evaluates by default, and building its splits (``zoo.plugins.hookspecs`` declares
the protocol; sources declare themselves with ``data_source``).

``--data`` takes four forms: a registered name with parameters (``digits``,
``folder:root=DIR``), ``NAME:LOCATION[:k=v,...]`` (``hf:ORG/NAME``, ``wds:URL``,
``table:labels.csv``), and a bare path, which the source claiming its suffix reads (or, without
one, the source that reads folders). ``normalize_data`` only makes local paths absolute and
never asks the registry; ``resolve_data`` decides the source. Torch-free.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError
from zoo.files.reading import absolute
from zoo.plugins.hookspecs import DataSource

if TYPE_CHECKING:
    from zoo.data.splits import DataSplits
    from zoo.plugins.components import Resolved
    from zoo.plugins.registry import Registry

# Parameters that always hold a local path (made absolute where the command line is read).
PATH_PARAMS = ("root",)
SPLITS = ("val", "test", "train", "all")
_NAME = r"[A-Za-z0-9_.-]+"
_PARAMS = re.compile(r":(?=[A-Za-z_][A-Za-z0-9_]*\s*=)")
_EMPTY = DataSource()


def split_params(text: str) -> tuple[str, str]:
    """``head`` and the ``k=v,...`` block after the first ``:`` followed by ``key=``."""
    match = _PARAMS.search(text)
    return (text, "") if match is None else (text[: match.start()], text[match.end() :])


def is_url(text: str) -> bool:
    return "://" in text


def local(location: str) -> str:
    """``location`` absolute when it names a local path (one that exists, a pattern of names in
    a folder that exists, or one written as a path: ``./``, ``../``, ``~``, ``/``); URLs and
    names (``ORG/NAME`` on the Hub) stay as given."""
    if is_url(location):
        return location
    path = Path(location).expanduser()
    pattern = any(c in path.name for c in "{*?[") and path.parent.is_dir()  # shards' names
    if path.exists() or pattern or location.startswith(("/", "./", "../", "~", ".")):
        return str(Path(absolute(str(path.parent))) / path.name) if pattern else absolute(str(path))
    return location


def _path_like(text: str) -> bool:
    return Path(text).expanduser().exists() or any(c in text for c in "/\\~") or text[:1] == "."


def normalize_data(text: str) -> str:
    """``--data`` with its local paths absolute, asking no registry (idempotent): a bare path;
    a location written as a path (``hf:./beans``); a ``root=`` parameter. A location given as
    a bare name (``hf:beans``) and a source's ``path_params`` are made absolute by
    ``resolve_data``."""
    text = text.strip()
    if not text:
        return text
    head, params = split_params(text)
    first, colon, rest = head.partition(":")
    named = bool(colon and re.fullmatch(_NAME, first))
    if Path(text).expanduser().exists() or (not params and not named and _path_like(text)):
        return local(text)  # a bare path
    if colon and rest and not re.fullmatch(_NAME, rest) and ":" not in rest:
        head = f"{first}:{local(rest)}"  # NAME:LOCATION
    elif colon and ":" in rest:
        second, _, location = rest.partition(":")
        if re.fullmatch(_NAME, second) and not is_url(rest):
            head = f"{first}:{second}:{local(location)}"  # PLUGIN:NAME:LOCATION
    if not params:
        return head
    from zoo.plugins.specs import format_spec, parse_params

    values = parse_params(params, kind="dataset")
    for key in PATH_PARAMS:
        if isinstance(values.get(key), str):
            values[key] = local(str(values[key]))
    return format_spec(head, values)


def source_of(factory: Any) -> DataSource:
    """A factory's ``data_source`` fields (empty for a dataset read by its name alone)."""
    found = getattr(factory, "data_source", None)
    return found if isinstance(found, DataSource) else _EMPTY


def resolve_data(
    text: str, *, prefer: str | None = None, registry: Registry | None = None, **params: Any
) -> Resolved:
    """The source that reads ``--data`` (see the module's forms), its parameters checked and
    its ``path_params`` absolute.

    A registered name comes first; then ``[PLUGIN:]NAME:LOCATION``; then a path claimed by its
    suffix, else by a source that reads folders. Two claimants are an error naming both.
    """
    from zoo.plugins.build import get_registry
    from zoo.plugins.components import resolve
    from zoo.plugins.specs import Spec

    registry = registry or get_registry()
    resolved = _resolve_data(text, prefer, registry, params)
    paths = source_of(resolved.factory).path_params
    values = dict(resolved.spec.params)
    for key in paths:
        if isinstance(values.get(key), str):
            values[key] = local(str(values[key]))
    if values == resolved.spec.params:
        return resolved
    spec = Spec(resolved.spec.name, resolved.spec.plugin, values)
    return resolve("dataset", spec, registry)


def _resolve_data(
    text: str, prefer: str | None, registry: Registry, params: dict[str, Any]
) -> Resolved:
    from zoo.plugins.components import resolve
    from zoo.plugins.specs import Spec, parse_params, parse_spec

    text = normalize_data(text)
    head, params_text = split_params(text)
    try:
        spec = parse_spec(text, kind="dataset")
    except ZooError:
        spec = None
    if spec is not None and _known(registry, spec.ref):
        return resolve("dataset", spec, registry, prefer=prefer, **params)
    extra = parse_params(params_text, kind="dataset") if params_text else {}
    # [PLUGIN:]NAME:LOCATION: the longest name that is a source with a location wins.
    parts = head.split(":")
    for n in (2, 1):
        ref, location = ":".join(parts[:n]), ":".join(parts[n:])
        if len(parts) <= n or not location or not all(re.fullmatch(_NAME, p) for p in parts[:n]):
            continue
        if not _known(registry, ref):
            continue
        component = registry.resolve("dataset", ref, prefer=prefer)
        source = source_of(registry.factory(component))
        if source.location is None:
            raise ZooError(
                f"dataset {component.qualified!r} takes no location: use "
                f"--data {ref}[:key=value,...]"
            )
        plugin, _, name = ref.rpartition(":")
        values = {source.location: local(location), **extra}
        return resolve("dataset", Spec(name, plugin or None, values), registry, **params)
    if spec is not None and not _path_like(text):
        return resolve("dataset", spec, registry, prefer=prefer, **params)  # the unknown name
    if params_text:
        raise ZooError(f"malformed --data {text!r}: expected NAME[:LOCATION][:key=value,...]")
    return _claim(registry, local(text), prefer, params)


def _known(registry: Registry, ref: str) -> bool:
    plugin, _, name = ref.rpartition(":")
    name = name.lower()
    return any(
        (not plugin or c.plugin == plugin) and (c.name == name or name in c.aliases)
        for c in registry.components("dataset")
    )


def _claim(registry: Registry, path: str, prefer: str | None, params: dict[str, Any]) -> Resolved:
    """The source whose suffix ``path`` ends with, else the one that reads folders."""
    from zoo.plugins.components import resolve
    from zoo.plugins.specs import Spec

    lowered = path.lower().rstrip("/")
    suffixed, folders = [], []
    for component in registry.components("dataset"):
        try:
            source = source_of(registry.factory(component))
        except ZooError:
            continue  # a broken plugin: `zoo plugins` reports it
        if source.location is None:
            continue
        if any(lowered.endswith(s) for s in source.suffixes):
            suffixed.append((component, source))
        elif source.folders:
            folders.append((component, source))
    found = suffixed or folders
    if len(found) > 1:
        mine = [f for f in found if f[0].plugin == prefer]
        found = mine if len(mine) == 1 else found
    if not found:
        raise ZooError(f"no dataset reads {path}; see `zoo list datasets`")
    if len(found) > 1:
        names = ", ".join(f"{c.qualified}:{path}" for c, _ in found)
        raise ZooError(f"several datasets read {path}; name one: --data {names}")
    component, source = found[0]
    spec = Spec(component.name, component.plugin, {str(source.location): path})
    return resolve("dataset", spec, registry, **params)


def location_of(resolved: Resolved) -> Any:
    """The resolved source's location parameter (its path, URL or name), or None."""
    source = source_of(resolved.factory)
    return resolved.spec.params.get(source.location) if source.location else None


def proposed_size(resolved: Resolved, cap: tuple[int, int]) -> tuple[int, int] | None:
    """The size the source proposes for a run without ``--image-size`` (None: its default)."""
    propose = source_of(resolved.factory).image_size
    return propose(dict(resolved.spec.params), cap) if propose is not None else None


def default_split(resolved: Resolved) -> str:
    """The split ``zoo eval --data`` judges without ``--split``."""
    choose = source_of(resolved.factory).default_split
    split = choose(dict(resolved.spec.params)) if choose is not None else "val"
    if split not in SPLITS:
        raise ZooError(f"{resolved.label} proposes split {split!r}, not one of {SPLITS}")
    return split


def stamp_of(resolved: Resolved) -> str | None:
    """The source's stamp of the data (``DataSource.stamp``) with its parameters, or None when
    it has none: what changes whenever the data read with these parameters may change."""
    import json

    stamp = source_of(resolved.factory).stamp
    text = stamp(dict(resolved.spec.params)) if stamp is not None else None
    if text is None:
        return None
    where = [resolved.component.qualified, resolved.spec.params]
    return json.dumps([*where, text], sort_keys=True, default=str)


def check_processes(resolved: Resolved, processes: int) -> None:
    """Refuse ``--nproc N`` beyond what the source can feed, before any process starts."""
    most = source_of(resolved.factory).processes
    limit = most(dict(resolved.spec.params)) if most is not None and processes > 1 else None
    if limit is not None and processes > limit:
        raise ZooError(
            f"{resolved.label}: {limit} training shards cannot be shared by {processes} "
            "processes; write more shards (zoo shard --shard-size) or use fewer processes"
        )


def for_channels(resolved: Resolved, in_chans: int) -> Resolved:
    """The source set to decode ``in_chans`` channels when it takes ``channels`` and the user
    did not say (a greyscale model judged on a folder that decodes RGB by default)."""
    from zoo.plugins.components import resolve
    from zoo.plugins.specs import accepted_params

    accepted = accepted_params(resolved.factory) or []
    if "channels" in accepted and "channels" not in resolved.spec.params:
        return resolve("dataset", resolved.spec, channels=in_chans)
    return resolved


def build_splits(
    resolved: Resolved,
    *,
    image_size: tuple[int, int] | None,
    seed: int,
    val_fraction: float,
    download: bool = False,
) -> DataSplits:
    """The source's splits, checked: a ``DataSplits`` (with one label per image, or label
    sets: the run's task, ``zoo.labeling.task``, follows from it)."""
    from zoo.data.splits import DataSplits

    data = resolved.build(
        image_size=image_size, seed=seed, val_fraction=val_fraction, download=download
    )
    if not isinstance(data, DataSplits):
        raise ZooError(f"{resolved.label} returned {type(data).__name__}, not zoo.data.DataSplits")
    return data
