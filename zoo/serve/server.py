"""Running the server: the port bound before anything is loaded (a port in use is one line,
exit 2), uvicorn serving the app on it, and a graceful stop.

SIGTERM and Ctrl-C (SIGINT) stop accepting connections, let every request in flight finish
(up to ``--shutdown-timeout`` seconds), then the process exits 0. With ``--workers N``,
uvicorn's supervisor starts N worker processes on the same socket, each with its own model;
it passes the signal on to them, and each stops the same way.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any

from zoo.errors import ZooError
from zoo.serve.options import ENVIRONMENT, ServeOptions, require


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), refused in one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ZooError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ZooError(
                f"port {port} on {host} is in use (another server?): choose another with --port"
            ) from None
        raise ZooError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(options: ServeOptions) -> None:
    """Serve until SIGTERM or Ctrl-C; a model that fails to load is one line, exit 1."""
    require()
    options.check()
    from zoo.models.loading import weights_path
    from zoo.models.weights import read_header, verify_tensors

    file = weights_path(options.source)  # bad input fails before the port is taken
    read_header(file)
    verify_tensors(file)
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    say(
        f"serving {options.source} on http://{shown}:{port} (the page: /, the API: /docs); "
        "loading the model"
    )
    if options.workers > 1:
        _serve_workers(options, sock)
    else:
        _serve_one(options, sock)
    say("stopped")


def _config(app: Any, options: ServeOptions, **extra: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=options.shutdown_timeout,
        lifespan="on",
        **extra,
    )


def _serve_one(options: ServeOptions, sock: socket.socket) -> None:
    from zoo.serve.app import Service, create_app

    service = Service(options, say)
    server = _server(_config(create_app(service), options), service)
    service.on_failure = lambda message: setattr(server, "should_exit", True)
    # uvicorn raises the signal that stopped it again once it has stopped; these handlers
    # take it, so that a graceful stop ends the command with exit code 0.
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    if service.failed:
        raise ZooError(service.failed, exit_code=1)


def _server(config: Any, service: Any) -> Any:
    """uvicorn's Server, saying when a signal starts the graceful stop."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                say(
                    f"stopping ({signal.Signals(sig).name}): no new connections, finishing "
                    f"{service.metrics.flying} request(s) in flight"
                )
                service.draining()
            super().handle_exit(sig, frame)

    return Server(config)


def _serve_workers(options: ServeOptions, sock: socket.socket) -> None:
    """``--workers N``: N processes on one socket, metrics added up over them."""
    from uvicorn.supervisors import Multiprocess

    metrics = tempfile.mkdtemp(prefix="zoo-serve-metrics-")
    os.environ[ENVIRONMENT] = options.to_environment()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
    config = _config(
        "zoo.serve.app:from_environment", options, factory=True, workers=options.workers
    )
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
        shutil.rmtree(metrics, ignore_errors=True)
    if any(worker.exitcode == 3 for worker in supervisor.processes):
        raise ZooError("a worker could not load the model (its error is above)", exit_code=1)
