"""The server's routes (FastAPI: imported by ``zoo serve`` once it has checked that the
``serve`` extra is installed) and the service behind them: the model, loaded and warmed up
in the background once the server listens (``/health`` answers at once, ``/ready`` once the
model can predict), the decoding pool and the batcher.

Bad input is answered with a 4xx status and a JSON ``{"error": ...}``, never a 500 or a
traceback, and the server keeps serving: a body that is not an image (415), an empty one or
none (400), an image over ``--max-pixels`` or a body over ``--max-bytes`` (413), a bad
``top_k`` (422), an unknown route (404) or method (405).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from zoo.serve.decoding import RequestError
from zoo.serve.options import ServeOptions

ROUTES = {"/", "/health", "/ready", "/info", "/metrics", "/predict", "/docs", "/openapi.json"}

_BODY = {
    "description": "One image as the raw body (Content-Type image/*), or several as "
    "multipart/form-data files.",
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
            }
        },
    },
}


class Service:
    """The model behind the routes, its batcher and pools, and whether it is ready."""

    def __init__(self, options: ServeOptions, say: Callable[[str], None] | None = None) -> None:
        from zoo.models.loading import weights_path
        from zoo.models.weights import read_header
        from zoo.serve.metrics import Metrics

        self.options = options
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.on_failure: Callable[[str], None] = self._exit
        self.file = weights_path(options.source)
        self.info_from_header = read_header(self.file).info
        self.metrics = Metrics()
        self.model: Any = None
        self.output: Any = None
        self.choice: Any = None
        self.ready = threading.Event()
        self.failed: str | None = None
        self.batcher: Any = None
        self.decoding: ThreadPoolExecutor | None = None

    @property
    def info(self) -> Any:
        return self.model.info if self.model is not None else self.info_from_header

    async def start(self) -> None:
        from PIL import Image

        from zoo.data.splits import default_workers
        from zoo.serve.batching import Batcher

        # --max-pixels is the limit: PIL's own (a warning above it, an error above twice it)
        # must not refuse smaller images first.
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, self.options.max_pixels)

        threads = self.options.decode_threads or default_workers()
        self.decoding = ThreadPoolExecutor(threads, thread_name_prefix="zoo-decode")
        self.batcher = Batcher(
            self._forward,
            self.options.max_batch,
            self.options.max_wait_ms / 1000,
            self.metrics.observe_batch,
            threads=self._forward_threads(),
        )
        self.batcher.start()
        self.loop = asyncio.get_running_loop()
        self.loading = self.loop.run_in_executor(None, self._load)

    def _forward_threads(self) -> int:
        """Batches run side by side: on a CPU one per core (each forward pass then runs on one
        thread: engines are measured that way too), on a GPU one at a time."""
        import torch

        from zoo.data.splits import default_workers
        from zoo.device.placement import resolve_device

        if resolve_device(self.options.device).type != "cpu":
            return self.options.forward_threads or 1
        threads = self.options.forward_threads or default_workers()
        if threads > 1:
            torch.set_num_threads(1)
        return threads

    def draining(self) -> None:
        """The server stops taking requests: the batcher runs what waits without waiting for
        more (safe to call from a signal handler)."""
        if self.batcher is not None and getattr(self, "loop", None) is not None:
            self.loop.call_soon_threadsafe(self.batcher.drain)

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
        if self.decoding is not None:
            self.decoding.shutdown(wait=True)

    def _load(self) -> None:
        """Load the model, choose its engine (measured, or as cached) and run one batch, so
        that the first request does not pay for any of it."""
        try:
            import torch

            from zoo.labeling.outputs import output_for
            from zoo.models.engines import prepare
            from zoo.models.loading import load

            options = self.options
            model = load(options.source, device=options.device, precision=options.precision)
            self.choice = prepare(model, options.engine, batch_size=options.max_batch)
            self.output = output_for(model.info, options.top_k)
            shape = (options.max_batch, model.info.in_chans, *model.info.image_size)
            self.model = model
            self._forward([torch.zeros(shape[1:], dtype=torch.uint8)] * options.max_batch)
        except Exception as exc:  # a ZooError's message, or what went wrong, on one line
            self.failed = f"loading {self.options.source} failed: {exc}"
            self.on_failure(self.failed)
            return
        import gc

        # What is loaded now lives as long as the server: leave it out of the garbage
        # collector's full passes, which would otherwise walk the whole of torch and the model
        # every so often while every thread waits.
        gc.collect()
        gc.freeze()
        self.ready.set()
        self.say(f"ready: {self.choice.describe()}")

    def _exit(self, message: str) -> None:
        """A ``--workers`` worker whose model failed to load: say why and exit with uvicorn's
        code for a worker that cannot start (3), on which its supervisor stops every worker
        rather than starting this one again."""
        import os

        self.say(f"error: {message}")
        os._exit(3)

    def _forward(self, images: list[Any]) -> Any:
        """Probabilities of a list of uint8 ``[C, H, W]`` images (the inference thread's
        work), in batches of at most ``--max-batch``."""
        import numpy as np
        import torch

        x = torch.from_numpy(np.stack([np.asarray(i) for i in images]))
        step = self.options.max_batch
        parts = [
            self.output.activate(self.model.logits(x[i : i + step])) for i in range(0, len(x), step)
        ]
        return torch.cat(parts)

    def describe(self) -> dict[str, Any]:
        """``GET /info``."""
        import zoo
        from zoo.labeling.task import task_of

        info, options = self.info, self.options
        out: dict[str, Any] = {
            "run": str(self.options.source),
            "weights": str(self.file),
            "arch": info.arch,
            "task": task_of(info),
            "classes": list(info.classes),
            "image_size": list(info.image_size),
            "in_chans": info.in_chans,
            "epoch": info.epoch,
            "ready": self.ready.is_set(),
            "max_batch": options.max_batch,
            "forward_threads": self.batcher.threads if self.batcher is not None else None,
            "max_wait_ms": options.max_wait_ms,
            "max_bytes": options.max_bytes,
            "max_pixels": options.max_pixels,
            "top_k": options.top_k,
            "zoo": zoo.__version__,
        }
        if self.model is not None:
            out["device"] = str(self.model.mean.device)
            out["precision"] = str(self.model.amp_dtype).removeprefix("torch.")
        if self.choice is not None:
            out["engine"] = {
                "name": self.choice.engine,
                "why": self.choice.why,
                "ms_per_image": self.choice.ms_per_image,
            }
        return out

    async def predict(self, request: Any, top_k: int | None) -> list[dict[str, Any]]:
        """``POST /predict``: the records of ``zoo predict --json`` for the request's images."""
        from zoo.labeling.outputs import Prediction, output_for
        from zoo.serve.decoding import decode

        if not self.ready.is_set():
            raise RequestError(503, "the model is loading: GET /ready says when it is ready")
        parts = await _images_of(request, self.options.max_bytes)
        info, loop = self.model.info, asyncio.get_running_loop()
        size, channels, limit = info.image_size, info.in_chans, self.options.max_pixels
        pixels = await asyncio.gather(
            *(
                loop.run_in_executor(self.decoding, decode, data, name, size, channels, limit)
                for name, data in parts
            )
        )
        probabilities = await self.batcher.submit(pixels)
        output = output_for(info, top_k or self.options.top_k)
        answers = output.answers(probabilities)
        return [
            output.record(Prediction(name, answer))
            for (name, _), answer in zip(parts, answers, strict=True)
        ]


async def _images_of(request: Any, max_bytes: int) -> list[tuple[str | None, bytes]]:
    """``(file name, bytes)`` of each image of the request: multipart files, or the body."""
    body = await _body(request, max_bytes)
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/"):
        return [(None, body)]
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, stream()).parse()
    except MultiPartException as exc:
        raise RequestError(400, f"bad multipart body: {exc}") from None
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if not files:
        raise RequestError(400, "the multipart body holds no file: send images as files")
    out = [(f.filename or f"file {i + 1}", await f.read()) for i, f in enumerate(files)]
    await form.close()
    return out


async def _body(request: Any, max_bytes: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``max_bytes``."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise RequestError(400, f"bad Content-Length {length!r}") from None
        if declared > max_bytes:
            raise RequestError(
                413, f"the body is {declared:,} bytes, over --max-bytes {max_bytes:,}"
            )
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise RequestError(413, f"the body is over --max-bytes {max_bytes:,}")
        chunks.append(chunk)
    return b"".join(chunks)


def page() -> str:
    """The web page (``GET /``): one self-contained file, nothing fetched from elsewhere."""
    return resources.files("zoo.serve").joinpath("templates/page.html").read_text()


REASONS = {400: "bad_request", 413: "too_large", 415: "bad_image", 503: "not_ready"}


def create_app(service: Service) -> Any:
    """The FastAPI app of ``service``, wrapped in the metrics middleware."""
    import zoo
    from zoo.serve.metrics import Track

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app = FastAPI(
        title="zoo serve",
        version=zoo.__version__,
        description=f"Predictions of {service.options.source}.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        service.metrics.errors.labels(REASONS.get(exc.status, "bad_request")).inc()
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        service.metrics.errors.labels("failed").inc()
        service.say(f"error: {request.method} {request.url.path}: {type(exc).__name__}: {exc}")
        return JSONResponse({"error": f"the server failed: {type(exc).__name__}"}, 500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page())

    @app.get("/health", summary="Alive: the server answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Ready: the model is loaded and warmed up")
    async def ready() -> JSONResponse:
        if service.ready.is_set():
            return JSONResponse({"ready": True})
        state = {"ready": False, **({"error": service.failed} if service.failed else {})}
        return JSONResponse(state, status_code=503)

    @app.get("/info", summary="The model: classes, input size, run, engine")
    async def info() -> dict[str, Any]:
        return service.describe()

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    async def metrics() -> Response:
        text, kind = service.metrics.render()
        return Response(text, media_type=kind)

    @app.post(
        "/predict",
        summary="Classes of one or several images",
        openapi_extra={"requestBody": _BODY},
        responses={
            400: {"description": "An empty body, or multipart without files"},
            413: {"description": "A body over --max-bytes or an image over --max-pixels"},
            415: {"description": "A body that is not an image"},
            503: {"description": "The model is still loading"},
        },
    )
    async def predict(
        request: Request,
        top_k: int | None = Query(None, ge=1, description="Classes per image (default: --top-k)"),
    ) -> JSONResponse:
        """The JSON of ``zoo predict --json``: one record per image, in the order sent."""
        return JSONResponse(await service.predict(request, top_k))

    return Track(app, service.metrics, ROUTES)


def from_environment() -> Any:
    """The app of a ``--workers`` worker process (uvicorn's factory), from the settings its
    parent process handed down."""
    return create_app(Service(ServeOptions.from_environment()))
