"""The server's Prometheus metrics (``GET /metrics``), through ``prometheus_client``.

Each server has its own registry. With ``--workers N``, each worker process writes its values
to files in the folder ``PROMETHEUS_MULTIPROC_DIR`` names (``prometheus_client``'s multiprocess
mode, set up by the parent process), and ``/metrics`` adds up every worker's.
"""

from __future__ import annotations

import os
from typing import Any

# Batch sizes are small integers: a bucket per power of two.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Requests by route and status, their latency, images, batch sizes and forward-pass
    times, requests in flight, and refused requests by reason."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.flying = 0  # requests in flight in this process (the gauge, readable)
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "zoo_requests",
            "HTTP requests answered, by route and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "zoo_request_seconds",
            "Time from a request's arrival to its answer, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "zoo_requests_in_flight",
            "Requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.images = Counter("zoo_images", "Images predicted.", registry=registry)
        self.batch_size = Histogram(
            "zoo_batch_size",
            "Images per forward pass (dynamic batching).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.forward = Histogram(
            "zoo_forward_seconds",
            "Time of each batch's forward pass.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "zoo_errors",
            "Requests refused or failed, by reason (bad_image, too_large, bad_request, "
            "not_ready, failed).",
            ["reason"],
            registry=registry,
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.forward.observe(seconds)
        self.images.inc(size)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry: Any = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Track:
    """A pure ASGI middleware: counts and times every HTTP request by its route (the route's
    template, or ``other`` for unknown paths, so a scan of random URLs does not create series)."""

    def __init__(self, app: Any, metrics: Metrics, routes: set[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import time

        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500
        start = time.perf_counter()

        async def sent(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        self.metrics.flying += 1
        try:
            await self.app(scope, receive, sent)
        finally:
            self.metrics.flying -= 1
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
