"""What a probe is asked to do, parsed and checked once, at the boundary (the CLI and
``zoo.probe`` both build a ``ProbeSettings`` here); saved in ``probe.json`` so that ``--resume``
continues with the same settings."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from zoo.errors import ZooError

_UNITS = {"s": 1, "m": 60, "h": 3600}
_COUNTS = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}


@dataclass(frozen=True)
class ProbeSettings:
    """A probe's settings (every value normalised: sizes as ``(h, w)``, the budget in
    seconds, parameter counts as integers)."""

    data: str  # a dataset name[:k=v] or a path, made absolute (as the zoo train command shows)
    archs: tuple[str, ...]  # names and globs over pretrained weights
    image_size: tuple[int, int] | None = None  # None: each weights' own input size
    max_models: int = 20
    max_params: int | None = None
    max_gmacs: float | None = None
    min_img_s: float | None = None
    budget: float | None = None  # seconds; None: no limit
    batch_size: int = 64
    device: str = "auto"
    precision: str = "auto"
    workers: int | None = None
    seed: int = 0
    val_split: float = 0.2

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["archs"] = list(self.archs)
        data["image_size"] = list(self.image_size) if self.image_size else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeSettings:
        known = {f.name for f in fields(cls)}
        return settings(**{k: v for k, v in data.items() if k in known})


def settings(
    data: str,
    archs: str | list[str] | tuple[str, ...],
    *,
    image_size: Any = None,
    max_models: int = 20,
    max_params: int | float | str | None = None,
    max_gmacs: float | str | None = None,
    min_img_s: float | str | None = None,
    budget: float | str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    workers: int | None = None,
    seed: int = 0,
    val_split: float = 0.2,
) -> ProbeSettings:
    """Parse and check every option; one ``ZooError`` line (exit code 2) for the first bad one."""
    from zoo.train.config import PRECISIONS, parse_image_size

    names = [archs] if isinstance(archs, str) else list(archs)
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise ZooError("give at least one --arch NAME or GLOB (see `zoo list --pretrained`)")
    if not str(data).strip():
        raise ZooError("--data is empty: give a dataset name or an image folder")
    checks = [
        (max_models >= 1, "--max-models must be at least 1"),
        (batch_size >= 1, "--batch-size must be at least 1"),
        (workers is None or workers >= 0, "--workers cannot be negative"),
        (_finite(val_split) and 0 < val_split < 1, "--val-split must be in (0, 1)"),
        (precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ZooError(message)
    return ProbeSettings(
        data=absolute_data(str(data)),
        archs=tuple(dict.fromkeys(names)),
        image_size=parse_image_size(image_size),
        max_models=int(max_models),
        max_params=None if max_params is None else int(parse_count(max_params, "--max-params")),
        max_gmacs=_positive(max_gmacs, "--max-gmacs"),
        min_img_s=_positive(min_img_s, "--min-img-s"),
        budget=None if budget is None else parse_duration(budget),
        batch_size=int(batch_size),
        device=str(device),
        precision=str(precision),
        workers=workers,
        seed=int(seed),
        val_split=float(val_split),
    )


def absolute_data(text: str) -> str:
    """``--data`` with its local paths made absolute, as ``zoo train`` resolves it, so that
    ``--resume`` from elsewhere reads the same data."""
    from zoo.data.source import normalize_data

    return normalize_data(text)


def parse_duration(text: float | str) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"1h30m"`` -> seconds (positive)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", raw)
        if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smh]?)", "", raw).strip():
            raise ZooError(f"--budget must be a duration such as 90s, 15m or 1h30m, got {text!r}")
        seconds = sum(float(n) * _UNITS[unit or "s"] for n, unit in parts)
    if not _finite(seconds) or seconds <= 0:
        raise ZooError(f"--budget must be a positive duration, got {text!r}")
    return seconds


def parse_count(text: int | float | str, option: str) -> float:
    """``25000000``, ``"25M"``, ``"1.5B"``, ``"500k"`` -> a positive number."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmb]?)\s*", str(text).lower())
        if not match:
            raise ZooError(f"{option} must be a number such as 25M, 1.5B or 500k, got {text!r}")
        value = float(match.group(1)) * _COUNTS[match.group(2)]
    if not _finite(value) or value <= 0:
        raise ZooError(f"{option} must be positive, got {text!r}")
    return value


def format_duration(seconds: float) -> str:
    """``900`` -> ``15m``; ``5400`` -> ``1h30m``; ``45.5`` -> ``45.5s``."""
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v)


def _positive(value: float | str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ZooError(f"{option} must be a number, got {value!r}") from None
    if not _finite(number) or number <= 0:
        raise ZooError(f"{option} must be positive, got {value!r}")
    return number


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
