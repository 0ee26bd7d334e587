"""A run's ``metrics.jsonl``, one record per epoch, as the model card, ``zoo eval`` and
``zoo report`` read it (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def read_history(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file."""
    try:
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise ZooError(f"cannot read {path}: {exc}") from None
