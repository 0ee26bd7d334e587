"""Which pretrained weights a probe compares.

``--arch`` names (``resnet18.a1_in1k``; a bare architecture takes its default tag) and globs
over the pretrained tags the registry holds (``'convnext_*'``, ``'resnet50.*'``: what
``zoo list --pretrained`` lists). Each candidate's backbone is measured on torch's meta device:
parameters (the classifier left out) and multiply-accumulates per image at its probe size,
without loading or downloading any weights. Then ``--max-params`` and ``--max-gmacs`` filter,
the smallest come first and at most ``--max-models`` are kept, so that a ``--budget`` spends its
time on the cheap candidates before the large ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError

if TYPE_CHECKING:
    from zoo.plugins.registry import Pretrained
    from zoo.probing.settings import ProbeSettings

_GLOB = set("*?[")


@dataclass
class Candidate:
    """One pretrained weights to probe, at its probe size, with its measured cost."""

    weights: Pretrained
    image_size: tuple[int, int]
    params: int | None = None  # the backbone's, without the classifier
    gmacs: float | None = None  # per image, at image_size

    @property
    def name(self) -> str:
        return self.weights.name


@dataclass
class Selection:
    candidates: list[Candidate]
    left_out: list[str] = field(default_factory=list)  # one line per reason


def match(patterns: tuple[str, ...] | list[str]) -> list[Pretrained]:
    """The pretrained weights the ``--arch`` names and globs select, each once, in the order
    given; one error line for a name that is not pretrained weights or a glob matching none."""
    from zoo.plugins.build import get_registry

    registry = get_registry()
    found: dict[str, Pretrained] = {}
    for pattern in patterns:
        if _GLOB & set(pattern):
            hits = registry.pretrained(pattern)
            if not hits:
                raise ZooError(
                    f"--arch {pattern!r} matches no pretrained weights; see "
                    f"`zoo list --pretrained --filter '{pattern}'`"
                )
        else:
            try:
                hits = [registry.find_pretrained(pattern)]
            except ZooError as exc:
                raise ZooError(f"--arch {pattern}: {exc}") from None
        for weights in hits:
            found.setdefault(weights.qualified, weights)
    return list(found.values())


def probe_size(weights: Pretrained, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """``--image-size``, else the size the weights were trained at (their tag's input size),
    else the architecture's default, else 224."""
    if image_size is not None:
        return image_size
    size = weights.config.get("input_size")
    if isinstance(size, list) and len(size) == 3:
        return int(size[1]), int(size[2])
    from zoo.plugins.components import resolve

    default = getattr(
        resolve("architecture", weights.qualified).factory, "default_image_size", None
    )
    return (int(default[0]), int(default[1])) if default else (224, 224)


def head_classes(weights: Pretrained) -> int:
    """The classes of the weights' own classifier (ImageNet's 1,000 when the tag says nothing);
    the network is built with it, so that every tensor of the weights loads."""
    value = weights.config.get("num_classes")
    return int(value) if isinstance(value, int) and value >= 0 else 1000


def measure(weights: Pretrained, size: tuple[int, int], in_chans: int) -> tuple[int, float]:
    """The backbone's parameters (without the classifier) and GMACs per image at ``size``,
    built on the meta device: no memory for weights, no arithmetic, no download."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from zoo.models.finetune import classifier_keys
    from zoo.plugins.components import resolve
    from zoo.probing.features import penultimate

    resolved = resolve("architecture", weights.qualified)
    with torch.device("meta"):
        net = resolved.build(num_classes=head_classes(weights), in_chans=in_chans, image_size=size)
    net.eval().requires_grad_(False)  # FlopCounterMode's backward tracking needs no graph
    head = classifier_keys(net)
    params = sum(p.numel() for name, p in net.named_parameters() if name not in head)
    counter = FlopCounterMode(display=False)
    with counter:
        penultimate(net, resolved.label)(torch.empty(1, in_chans, *size, device="meta"))
    return int(params), counter.get_total_flops() / 2e9  # one multiply-accumulate: two FLOPs


class Sizes:
    """``measure`` once per architecture, size, channel count and classifier (tags share their
    network), remembered in zoo's cache folder (``probe-sizes-ENV.json``) under the registry
    cache's key, which changes whenever the installed plugins or libraries may change: a later
    probe orders and filters its candidates without building their networks, or importing the
    library that provides them."""

    PART = "probe-sizes"

    def __init__(self) -> None:
        from zoo.plugins import cache
        from zoo.plugins.build import get_registry

        self._key = get_registry().key
        saved = cache.read(self._key, part=self.PART) if self._key else None
        self._known: dict[str, list[Any] | None] = dict((saved or {}).get("sizes", {}))
        self._new = False

    def __call__(self, candidate: Candidate, in_chans: int) -> None:
        import json

        weights = candidate.weights
        key = json.dumps(
            [
                weights.component.qualified,
                list(candidate.image_size),
                in_chans,
                head_classes(weights),
            ]
        )
        if key not in self._known:
            try:
                self._known[key] = list(measure(weights, candidate.image_size, in_chans))
            except Exception:  # a network that cannot be built on meta: cost unknown
                self._known[key] = None
            self._new = True
        found = self._known[key]
        if found is not None:
            candidate.params, candidate.gmacs = int(found[0]), float(found[1])

    def save(self) -> None:
        """Write what was measured since the last save (a cache folder that cannot be written
        only costs measuring again)."""
        from zoo.plugins import cache

        if self._new and self._key:
            cache.write(self._key, {"sizes": self._known}, part=self.PART)
            self._new = False


def select(
    matched: list[Pretrained], settings: ProbeSettings, in_chans: int, sizes: Sizes | None = None
) -> Selection:
    """The candidates among ``matched``, filtered, smallest first (by parameters, then GMACs;
    unknown sizes last), at most ``--max-models``; ``left_out`` says what the limits dropped."""
    sizes = sizes or Sizes()
    candidates = [Candidate(w, probe_size(w, settings.image_size)) for w in matched]
    for c in candidates:
        sizes(c, in_chans)
    sizes.save()
    left_out = []
    too_big = {id(c) for c in candidates if _over(c.params, settings.max_params)}
    too_costly = {
        id(c) for c in candidates if id(c) not in too_big and _over(c.gmacs, settings.max_gmacs)
    }
    if too_big:
        left_out.append(f"{_count(too_big)} over --max-params {settings.max_params:,}")
    if too_costly:
        left_out.append(f"{_count(too_costly)} over --max-gmacs {settings.max_gmacs:g}")
    dropped = too_big | too_costly
    kept = [c for c in candidates if id(c) not in dropped]
    if not kept:
        raise ZooError(
            f"no candidate is left: {'; '.join(left_out)}; raise the limits or pick smaller models"
        )
    kept.sort(key=lambda c: (c.params is None, c.params or 0, c.gmacs or 0.0, c.name))
    if len(kept) > settings.max_models:
        beyond = kept[settings.max_models :]
        left_out.append(
            f"{_count(beyond)} beyond --max-models {settings.max_models}: "
            f"{', '.join(c.name for c in beyond[:3])}{' ...' if len(beyond) > 3 else ''}"
        )
        kept = kept[: settings.max_models]
    return Selection(kept, left_out)


def _over(value: float | None, limit: float | None) -> bool:
    return limit is not None and value is not None and value > limit


def _count(candidates: list[Candidate] | set[int]) -> str:
    return f"{len(candidates)} candidate{'s' if len(candidates) != 1 else ''}"
