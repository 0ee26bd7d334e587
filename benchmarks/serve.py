"""``zoo serve`` against the endpoint a user writes by hand, under the same load.

The hand-written endpoint (``--hand-server RUN``, this file) is what FastAPI's tutorials
lead to: ``zoo.load`` the model once, then per request PIL opens the body, converts it to RGB
and resizes it, one forward pass of one image, softmax, top-5 as JSON. It is a plain ``def``
endpoint, so FastAPI runs it on its thread pool (an ``async def`` one would run the model on the
event loop, one request at a time: ``--hand-async`` measures that too). Both servers run on
uvicorn without access logs, in their own process, on this machine's cores.

The load: ``--clients`` keep-alive HTTP clients (threads of ``http.client``, each its own
connection, one request at a time) send ``--requests`` POSTs of photo-like JPEGs of
``--photo-size`` pixels between them, after ``--warmup`` requests not counted. Per server:
throughput (requests/s), latency p50 and p99 (ms), errors (non-200 answers and failed
connections), the server process's CPU time per request (all its threads: on a machine shared
with other work, the figure its load changes least) and, for zoo serve, the histogram of its
batch sizes from ``/metrics``. The
servers take turns for ``--rounds`` rounds (A B A B ...); medians over rounds, and the ratios
zoo / hand of each round's throughput (median) and p99 (median).

    python benchmarks/serve.py --arch simplecnn --image-size 64 --requests 1500 --rounds 3
    python benchmarks/serve.py --arch resnet18 --image-size 224 --requests 600 --rounds 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import load, photo_folder, run, zoo_command


def hand_app(run_dir: str, async_endpoint: bool = False) -> Any:
    """The endpoint a user writes: one image per request, one forward pass each."""
    import io

    import numpy as np
    import torch
    from fastapi import Body, FastAPI
    from PIL import Image

    import zoo

    model = zoo.load(run_dir)
    h, w = model.image_size
    mean = torch.tensor(model.info.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.info.std).view(1, -1, 1, 1)
    app = FastAPI()

    def predict(body: bytes) -> list[dict[str, Any]]:
        image = Image.open(io.BytesIO(body)).convert("RGB").resize((w, h))
        x = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None].float().div(255)
        with torch.inference_mode():
            probs = model((x - mean) / std).softmax(dim=1)[0]
        top = probs.topk(min(5, probs.shape[0]))
        return [
            {"class": model.classes[i], "probability": round(p, 6)}
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]

    if async_endpoint:

        @app.post("/predict")
        async def predict_async(body: bytes = Body(..., media_type="image/jpeg")) -> Any:
            return predict(body)
    else:

        @app.post("/predict")
        def predict_sync(body: bytes = Body(..., media_type="image/jpeg")) -> Any:
            return predict(body)

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def hand_server(run_dir: str, async_endpoint: bool) -> None:
    """uvicorn serving the hand-written app on a free port, which it prints."""
    import socket

    import uvicorn

    app = hand_app(run_dir, async_endpoint)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"listening on {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


class Server:
    """A server process on a port of its own, stopped with SIGTERM."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
            text=True,
        )
        self.lines: list[str] = []
        self.port: int | None = None
        found = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"(?:127\.0\.0\.1:|listening on )(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        found.wait(600)
        if self.port is None:
            raise SystemExit(f"{command[:4]} did not start:\n{''.join(self.lines)[-3000:]}")
        self.wait_ready()

    def wait_ready(self, timeout: float = 600) -> None:
        """Poll GET /ready until it says 200 (the model is loaded and warmed up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{''.join(self.lines)[-3000:]}")
            try:
                status, _ = request(self.port, "GET", "/ready")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server was not ready in time")

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (all its threads; Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


def request(port: int | None, method: str, path: str, body: bytes | None = None) -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {"Content-Type": "image/jpeg"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def load_test(port: int, bodies: list[bytes], clients: int, count: int) -> dict[str, Any]:
    """``count`` POST /predict requests from ``clients`` keep-alive connections."""
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: list[str] = []

    def client() -> None:
        nonlocal issued
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                if issued >= count:
                    break
                i = issued
                issued += 1
            body = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "image/jpeg"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
                reason = f"status {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                ok, reason = False, type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                if not ok:
                    errors.append(reason)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": count,
        "seconds": round(wall, 3),
        "throughput": round(count / wall, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
    }


def batch_histogram(port: int) -> dict[str, int]:
    """zoo serve's batch sizes so far: the number of batches in each bucket of
    ``zoo_batch_size`` (``le`` bounds; from Prometheus' cumulative counts)."""
    _, text = request(port, "GET", "/metrics")
    cumulative = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'zoo_batch_size_bucket\{le="([^"]+)"\} ([0-9.e+]+)', text.decode())
    }
    out, before = {}, 0.0
    for bound, total in cumulative.items():
        if total - before:
            out[f"<={bound}"] = int(total - before)
        before = total
    return out


def subtract(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hand-server", metavar="RUN", help=argparse.SUPPRESS)
    parser.add_argument("--hand-async", action="store_true", help="an async def hand endpoint")
    parser.add_argument("--arch", default="simplecnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--photo-size", type=int, default=224, help="the JPEGs' side, pixels")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--serve-args", default="", help="more zoo serve options, one string")
    parser.add_argument("--keep", type=Path, help="write the JPEG folder here and reuse it")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.hand_server:
        hand_server(args.hand_server, args.hand_async)
        return 0
    before = load()
    rounds: dict[str, list[dict[str, Any]]] = {"zoo serve": [], "hand endpoint": []}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        env = {"ZOO_CACHE_DIR": str(tmp / "cache")}
        size = args.photo_size
        photos = photo_folder((args.keep or tmp) / f"photos-{size}", 64, width=size, height=size)
        model = tmp / "run"
        trained = run(
            zoo_command(
                "train", "--data", f"folder:root={photos}", "--arch", args.arch,
                "--image-size", str(args.image_size), "--epochs", "1", "--batch-size", "16",
                "--device", args.device, "--out", str(model),
            ),
            env,
        )  # fmt: skip
        if trained.code:
            sys.stderr.write(trained.output[-3000:])
            raise SystemExit("training the model failed")
        bodies = [p.read_bytes() for p in sorted(photos.rglob("*.jpg"))]
        commands = {
            "zoo serve": zoo_command(
                "serve", str(model), "--port", "0", "--device", args.device,
                *args.serve_args.split(),
            ),
            "hand endpoint": [
                sys.executable, __file__, "--hand-server", str(model),
                *(["--hand-async"] if args.hand_async else []),
            ],
        }  # fmt: skip
        for r in range(args.rounds):
            order = list(commands) if r % 2 == 0 else list(reversed(commands))
            for name in order:
                server = Server(commands[name], env)
                assert server.port is not None
                load_test(server.port, bodies, args.clients, args.warmup)
                batches = batch_histogram(server.port) if name == "zoo serve" else {}
                cpu = server.cpu_seconds()
                result = load_test(server.port, bodies, args.clients, args.requests)
                cpu = server.cpu_seconds() - cpu
                result["server_cpu_ms_per_request"] = round(1000 * cpu / args.requests, 3)
                if name == "zoo serve":
                    result["batch_sizes"] = subtract(batch_histogram(server.port), batches)
                    _, info = request(server.port, "GET", "/info")
                    result["engine"] = json.loads(info).get("engine", {}).get("name")
                result["exit"] = server.stop()
                rounds[name].append(result)
                print(f"round {r + 1} {name}: {json.dumps(result)}", file=sys.stderr)
    report = summarize(rounds)
    report.update(
        arch=args.arch,
        image_size=args.image_size,
        photo_size=args.photo_size,
        clients=args.clients,
        requests=args.requests,
        rounds=args.rounds,
        hand=("async def" if args.hand_async else "def") + " endpoint",
        load_average=[before, load()],
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{args.arch} at {args.image_size} px, {args.photo_size}-px JPEGs, {args.clients} "
        f"clients, {args.requests} requests, {args.rounds} rounds; load {before}-{load()}"
    )
    for name in ("zoo serve", "hand endpoint"):
        m = report[name]
        print(
            f"  {name:>13}: {m['throughput']:.1f} req/s, p50 {m['p50_ms']:.1f} ms, p99 "
            f"{m['p99_ms']:.1f} ms, errors {m['errors']}, server CPU "
            f"{m['server_cpu_ms_per_request']:.2f} ms per request"
        )
    print(
        f"  throughput ratio {report['throughput_ratio']:.2f} (target >= 1.5), p99 ratio "
        f"{report['p99_ratio']:.2f} (target <= 1), server CPU per request ratio "
        f"{report['cpu_per_request_ratio']:.2f}, batch sizes {report['batch_sizes']}"
    )
    return 0


def summarize(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per server over the rounds, and the medians of the per-round ratios."""
    out: dict[str, Any] = {"per_round": rounds}
    for name, results in rounds.items():
        out[name] = {
            key: statistics.median(r[key] for r in results)
            for key in ("throughput", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
        }
        out[name]["errors"] = sum(r["errors"] for r in results)
    pairs = list(zip(rounds["zoo serve"], rounds["hand endpoint"], strict=True))
    out["throughput_ratio"] = round(
        statistics.median(a["throughput"] / b["throughput"] for a, b in pairs), 3
    )
    out["p99_ratio"] = round(statistics.median(a["p99_ms"] / b["p99_ms"] for a, b in pairs), 3)
    out["cpu_per_request_ratio"] = round(
        statistics.median(
            a["server_cpu_ms_per_request"] / b["server_cpu_ms_per_request"] for a, b in pairs
        ),
        3,
    )
    histogram: dict[str, int] = {}
    for r in rounds["zoo serve"]:
        for k, v in r.get("batch_sizes", {}).items():
            histogram[k] = histogram.get(k, 0) + v
    out["batch_sizes"] = histogram
    return out


if __name__ == "__main__":
    sys.exit(main())
