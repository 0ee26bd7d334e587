"""``zoo serve``'s settings, checked once where they enter, and the packages it needs."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass

from zoo.errors import ZooError

# The packages of the ``serve`` extra, by the module each provides.
PACKAGES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "prometheus_client": "prometheus-client",
    "python_multipart": "python-multipart",
}
# What the worker processes of --workers read their settings from.
ENVIRONMENT = "ZOO_SERVE_OPTIONS"


@dataclass
class ServeOptions:
    """What ``zoo serve`` was asked for. ``source``: a run, a weights file or hf-hub:ORG/NAME."""

    source: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    max_wait_ms: float = 5.0
    device: str = "auto"
    precision: str = "auto"
    engine: str = "auto"
    workers: int = 1
    decode_threads: int | None = None  # None: the machine's cores, at most 8
    forward_threads: int | None = None  # None: the cores on a CPU (at most 8), 1 on a GPU
    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    top_k: int = 5
    shutdown_timeout: float = 30.0

    def check(self) -> ServeOptions:
        """Refuse bad values in one line (the ``zoo.errors`` contract: exit 2)."""
        from zoo.device.precision import check_precision
        from zoo.models.engines import check_engine

        positive = {
            "--max-batch": self.max_batch,
            "--workers": self.workers,
            "--max-bytes": self.max_bytes,
            "--max-pixels": self.max_pixels,
            "--top-k": self.top_k,
        }
        for name, value in positive.items():
            if value < 1:
                raise ZooError(f"{name} must be at least 1, got {value}")
        if self.max_wait_ms < 0:
            raise ZooError(f"--max-wait-ms must be 0 or more, got {self.max_wait_ms}")
        if not 0 <= self.port <= 65535:
            raise ZooError(f"--port must be 0-65535, got {self.port}")
        for name, threads in (
            ("--decode-threads", self.decode_threads),
            ("--forward-threads", self.forward_threads),
        ):
            if threads is not None and threads < 1:
                raise ZooError(f"{name} must be at least 1, got {threads}")
        check_precision(self.precision)
        check_engine(self.engine)
        return self

    def to_environment(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> ServeOptions:
        """The settings the parent process of --workers handed down."""
        return cls(**json.loads(os.environ[ENVIRONMENT]))


def require() -> None:
    """Refuse early, in one line, when the ``serve`` extra is not installed."""
    missing = [p for module, p in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ZooError(f"zoo serve needs {', '.join(missing)}: pip install 'zoo[serve]'")
