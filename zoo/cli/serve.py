"""``zoo serve``: a trained model behind HTTP (``zoo.serve``); this module only reads the
command line."""

from __future__ import annotations

import typer

from zoo.cli.common import command


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


@command
def serve(
    source: str = typer.Argument(
        ..., metavar="RUN|WEIGHTS", help="A run, a weights file or hf-hub:ORG/NAME[@REVISION]."
    ),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", metavar="PORT", help="Port (0: any free port)."),
    max_batch: int = typer.Option(
        32, "--max-batch", metavar="N", help="Most images per forward pass."
    ),
    max_wait_ms: float = typer.Option(
        5.0,
        "--max-wait-ms",
        metavar="MS",
        help="Longest an image waits for others to fill its batch.",
    ),
    device: str = typer.Option(
        "auto", "--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps."
    ),
    precision: str = typer.Option(
        "auto",
        "--precision",
        metavar="PRECISION",
        help="auto (as zoo train chooses for the device and network) | fp32 | bf16 | fp16.",
    ),
    engine: str = typer.Option(
        "auto",
        "--engine",
        metavar="ENGINE",
        help="auto (the fastest measured on this CPU, cached beside the weights) | eager | "
        "torchscript | onnxruntime.",
    ),
    workers: int = typer.Option(
        1, "--workers", metavar="N", help="Server processes, each with its own model."
    ),
    decode_threads: int | None = typer.Option(
        None, "--decode-threads", metavar="N", help="Image decoding threads (default: up to 8)."
    ),
    forward_threads: int | None = typer.Option(
        None,
        "--forward-threads",
        metavar="N",
        help="Batches run side by side (default: the cores on a CPU, each batch on one; 1 on "
        "a GPU).",
    ),
    max_bytes: int = typer.Option(
        20 * 2**20, "--max-bytes", metavar="N", help="Largest request body (413 above)."
    ),
    max_pixels: int = typer.Option(
        40_000_000, "--max-pixels", metavar="N", help="Largest image, width x height (413 above)."
    ),
    top_k: int = typer.Option(
        5, "--top-k", "-k", metavar="K", help="Classes per image unless ?top_k= says."
    ),
    shutdown_timeout: float = typer.Option(
        30.0,
        "--shutdown-timeout",
        metavar="S",
        help="On SIGTERM or Ctrl-C, how long requests in flight may take to finish.",
    ),
) -> None:
    """Serve a model over HTTP: POST /predict (an image body, or multipart files; the JSON of
    zoo predict --json), GET /health, /ready, /info, /metrics (Prometheus), /docs (OpenAPI)
    and / (a web page to drop images on). Concurrent requests run as one batch. Needs
    zoo[serve]."""
    from zoo.serve.options import ServeOptions
    from zoo.serve.server import serve as run

    run(
        ServeOptions(
            source=source,
            host=host,
            port=port,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            device=device,
            precision=precision,
            engine=engine,
            workers=workers,
            decode_threads=decode_threads,
            forward_threads=forward_threads,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            top_k=top_k,
            shutdown_timeout=shutdown_timeout,
        )
    )
