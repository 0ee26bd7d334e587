"""``zoo serve``: real server processes on 127.0.0.1 (a free port each, which the server prints),
real HTTP clients (``http.client``, keep-alive), the batch-size metric under concurrent
requests, bad input refused with 4xx while the server keeps serving, a graceful SIGTERM with
requests in flight, the web page in headless Chromium.

Nothing waits on the clock: a test waits for the lines a server prints (a pipe), for its
``/ready`` and ``/metrics`` answers, and a server whose batches wait far longer than any test
runs only when enough images have come (or on SIGTERM), so that which requests share a batch
is decided by the test, not by timing."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from zoo.builtins.loaders import digits_arrays


class Served:
    """A ``zoo serve`` process: its port, and every line it printed on stderr."""

    def __init__(self, run: Path, *args: str, ready: int = 1, cwd: Path | None = None) -> None:
        command = [sys.executable, "-m", "zoo", "serve", str(run), "--port", "0", *args]
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.wait_line(r"on http://127\.0\.0\.1:(\d+)")
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", first).group(1))
        for i in range(ready):  # each worker process says when its model is ready
            self.wait_line(r"^ready: ", count=i + 1)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append("<exit>")
            self.changed.notify_all()

    def wait_line(self, pattern: str, count: int = 1, timeout: float = 120) -> str:
        """The ``count``-th line matching ``pattern``, once printed."""

        def found() -> list[str]:
            return [x for x in self.lines if re.search(pattern, x)]

        with self.changed:
            ok = self.changed.wait_for(
                lambda: len(found()) >= count or "<exit>" in self.lines, timeout
            )
            if not ok or len(found()) < count:
                raise AssertionError(f"no line {pattern!r}; the server said:\n" + self.text())
            return found()[count - 1]

    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, Any]:
    """One request: its status and its JSON (or text) answer."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(data) if "json" in kind else data.decode()
    finally:
        if own:
            conn.close()


def multipart(files: dict[str, bytes]) -> tuple[bytes, dict[str, str]]:
    boundary = "zoo-test-boundary"
    parts = []
    for name, data in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def batch_sizes(port: int) -> dict[str, float]:
    """``zoo_batch_size``'s cumulative buckets, its count and its sum."""
    _, text = call(port, "GET", "/metrics")
    found = dict(re.findall(r'^zoo_batch_size_bucket\{le="([^"]+)"\} (\S+)$', text, re.M))
    for key in ("count", "sum"):
        found[key] = re.search(rf"^zoo_batch_size_{key} (\S+)$", text, re.M).group(1)
    return {k: float(v) for k, v in found.items()}


def in_flight(port: int) -> float:
    _, text = call(port, "GET", "/metrics")
    return float(re.search(r"^zoo_requests_in_flight (\S+)$", text, re.M).group(1))


@pytest.fixture(scope="module")
def scans() -> list[bytes]:
    pixels, _ = digits_arrays()
    return [png(pixels[i, 0]) for i in range(12)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run at 8x8 trained long enough to be confident (the docs show its page)."""
    from zoo.train.config import TrainConfig
    from zoo.train.trainer import Trainer

    out = tmp_path_factory.mktemp("served") / "digits"
    Trainer(TrainConfig(out=str(out), epochs=4, image_size="8", batch_size=64)).fit()
    return out


@pytest.fixture(scope="module")
def served(digits: Path) -> Iterator[Served]:
    """The digits run behind a server with small limits (eager: engines are tested apart),
    started beside it, so that it names the run ``digits``."""
    server = Served(
        Path("digits"),
        *("--engine", "eager", "--max-bytes", "60000", "--max-pixels", "250000"),
        cwd=digits.parent,
    )
    yield server
    assert server.stop() == 0, server.text()
    assert "Traceback" not in server.text()


def test_predict_answers_as_zoo_predict_json(cli, served, digits, scans, tmp_path) -> None:
    files = []
    for i, data in enumerate(scans[:3]):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(data)
    expected = json.loads(cli("predict", digits, *files, "--json", "-k", "3").stdout)

    status, answer = call(
        served.port, "POST", "/predict?top_k=3", scans[0], {"Content-Type": "image/png"}
    )
    assert status == 200 and len(answer) == 1 and answer[0]["path"] is None
    assert answer[0].keys() == expected[0].keys() and answer[0]["error"] is None
    body, headers = multipart({f.name: f.read_bytes() for f in files})
    status, answers = call(served.port, "POST", "/predict?top_k=3", body, headers)
    assert status == 200 and [a["path"] for a in answers] == ["0.png", "1.png", "2.png"]
    for got, want in zip([answer[0], *answers], [expected[0], *expected], strict=True):
        assert [p["class"] for p in got["predictions"]] == [p["class"] for p in want["predictions"]]
        assert [p["probability"] for p in got["predictions"]] == pytest.approx(
            [p["probability"] for p in want["predictions"]], abs=1e-5
        )
    status, default = call(served.port, "POST", "/predict", scans[0])  # --top-k's 5
    assert status == 200 and len(default[0]["predictions"]) == 5


def test_endpoints(served) -> None:
    port = served.port
    assert call(port, "GET", "/health") == (200, {"status": "ok"})
    assert call(port, "GET", "/ready") == (200, {"ready": True})
    status, info = call(port, "GET", "/info")
    assert status == 200 and info["classes"] == [str(d) for d in range(10)]
    assert info["image_size"] == [8, 8] and info["in_chans"] == 1 and info["task"] == "single-label"
    assert info["engine"]["name"] == "eager" and info["run"] == "digits"
    status, schema = call(port, "GET", "/openapi.json")
    assert status == 200 and {"/predict", "/health", "/ready", "/info"} <= schema["paths"].keys()
    assert "image/*" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    status, docs = call(port, "GET", "/docs")
    assert status == 200 and "swagger" in docs.lower()
    status, metrics = call(port, "GET", "/metrics")
    assert status == 200 and "# TYPE zoo_requests_total counter" in metrics
    assert 'zoo_requests_total{method="GET",route="/health",status="200"}' in metrics
    status, page = call(port, "GET", "/")
    assert status == 200 and "<title>zoo serve</title>" in page
    # Self-contained: nothing fetched from another origin.
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page) and "https://" not in page


def test_bad_input_is_refused_and_the_server_keeps_serving(served, scans) -> None:
    port = served.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)  # one keep-alive client
    truncated = scans[1][:40]
    bomb = png(np.zeros((600, 600), dtype=np.uint8))  # 360,000 pixels in about 1 kB
    assert len(bomb) < 60000
    multipart_without_files = (
        b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--b--\r\n',
        {"Content-Type": "multipart/form-data; boundary=b"},
    )
    cases = [
        ("POST", "/predict", b"just some text, not an image", {}, 415, "not an image"),
        ("POST", "/predict", truncated, {"Content-Type": "image/png"}, 415, "not"),
        ("POST", "/predict", bomb, {"Content-Type": "image/png"}, 413, "over --max-pixels 250,000"),
        ("POST", "/predict", b"\0" * 70000, {}, 413, "over --max-bytes"),
        ("POST", "/predict", b"", {}, 400, "empty"),
        ("POST", "/predict", *multipart_without_files, 400, "no file"),
        ("POST", "/predict?top_k=0", scans[0], {}, 422, None),
        ("GET", "/predict", None, {}, 405, None),
        ("DELETE", "/health", None, {}, 405, None),
        ("GET", "/no/such/route", None, {}, 404, None),
    ]
    for method, path, body, headers, status, message in cases:
        if status == 413 and body and len(body) > 60000:
            conn.close()  # the server answers before reading the body, then closes
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        got, answer = call(port, method, path, body, headers, conn=conn)
        assert got == status, (path, status, answer)
        if message:
            assert message in answer["error"], answer
        if status == 413 and body and len(body) > 60000:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        assert call(port, "POST", "/predict", scans[2], conn=conn)[0] == 200  # still serving
    conn.close()
    _, metrics = call(port, "GET", "/metrics")
    for reason, count in (("bad_image", 2), ("too_large", 2), ("bad_request", 2)):
        assert re.search(rf'^zoo_errors_total\{{reason="{reason}"\}} {count}\.0$', metrics, re.M)
    assert not re.search(r'status="5\d\d"', metrics)


def test_concurrent_requests_run_as_one_batch(small_run, scans) -> None:
    # Batches wait up to ten minutes for 4 images: they run when 4 have come, never by time.
    server = Served(small_run, "--engine", "eager", "--max-batch", "4", "--max-wait-ms", "6e5")
    try:
        before = batch_sizes(server.port)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda d: call(server.port, "POST", "/predict", d), scans[4:8]))
        assert [status for status, _ in answers] == [200] * 4
        after = batch_sizes(server.port)
        assert after["count"] - before["count"] == 1 and after["sum"] - before["sum"] == 4
        assert after["4.0"] - before["4.0"] == 1 and after["2.0"] == before["2.0"]
        # One request of 3 files and one of 1 fill the next batch.
        body, headers = multipart({f"{i}.png": d for i, d in enumerate(scans[:3])})
        with ThreadPoolExecutor(2) as pool:
            three = pool.submit(call, server.port, "POST", "/predict", body, headers)
            one = pool.submit(call, server.port, "POST", "/predict", scans[3])
            assert three.result()[0] == one.result()[0] == 200
        assert len(three.result()[1]) == 3
        last = batch_sizes(server.port)
        assert last["count"] - after["count"] == 1 and last["sum"] - after["sum"] == 4
    finally:
        assert server.stop() == 0, server.text()


def test_batches_run_side_by_side_on_forward_threads(small_run, scans) -> None:
    # Two forward threads, batches of 2 that run only once full: 6 concurrent requests are 3
    # batches, two of them at a time, and each answer is what one server thread gives alone.
    args = ("--engine", "eager", "--max-wait-ms", "6e5", "--top-k", "3")
    single = Served(small_run, *args, "--max-batch", "1", "--forward-threads", "1")
    try:
        alone = [call(single.port, "POST", "/predict", d)[1] for d in scans[:6]]
    finally:
        assert single.stop() == 0, single.text()
    server = Served(small_run, *args, "--max-batch", "2", "--forward-threads", "2")
    try:
        assert call(server.port, "GET", "/info")[1]["forward_threads"] == 2
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda d: call(server.port, "POST", "/predict", d), scans[:6]))
        assert [status for status, _ in answers] == [200] * 6
        for (_, got), want in zip(answers, alone, strict=True):
            assert [p["class"] for p in got[0]["predictions"]] == [
                p["class"] for p in want[0]["predictions"]
            ]
            assert [p["probability"] for p in got[0]["predictions"]] == pytest.approx(
                [p["probability"] for p in want[0]["predictions"]], abs=1e-5
            )
        sizes = batch_sizes(server.port)
        assert sizes["count"] == 3 and sizes["sum"] == 6
    finally:
        assert server.stop() == 0, server.text()
    assert "Traceback" not in server.text()


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(small_run, scans) -> None:
    server = Served(small_run, "--engine", "eager", "--max-batch", "4", "--max-wait-ms", "6e5")
    with ThreadPoolExecutor(3) as pool:
        # Three requests wait for a fourth image to fill their batch: they are in flight.
        futures = [pool.submit(call, server.port, "POST", "/predict", d) for d in scans[:3]]
        while in_flight(server.port) < 4:  # theirs, and this /metrics request
            assert not any(f.done() for f in futures)
        server.proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in futures]
    assert [status for status, _ in answers] == [200] * 3
    assert all(len(answer[0]["predictions"]) == 5 for _, answer in answers)
    assert server.proc.wait(120) == 0, server.text()
    # 3, or 4 if the signal came before the last /metrics request had quite ended
    stopping = r"stopping \(SIGTERM\): no new connections, finishing [34] request"
    assert re.search(stopping, server.text())
    assert server.wait_line("^stopped$") and "Traceback" not in server.text()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=10)


def test_two_workers_share_the_port_and_stop_together(small_run, scans) -> None:
    server = Served(small_run, "--engine", "eager", "--workers", "2", ready=2)
    try:
        statuses = [call(server.port, "POST", "/predict", d)[0] for d in scans[:6]]
        assert statuses == [200] * 6
        _, metrics = call(server.port, "GET", "/metrics")  # added up over both workers
        assert re.search(r"^zoo_images_total 6\.0$", metrics, re.M), metrics
    finally:
        assert server.stop() == 0, server.text()
    assert "Traceback" not in server.text()


def test_a_port_in_use_is_one_line_exit_2(cli, small_run) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", small_run, "--port", port, code=2)
    assert result.stderr == (
        f"error: port {port} on 127.0.0.1 is in use (another server?): choose another with --port\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-batch", "0"], "--max-batch must be at least 1"),
        (["--precision", "fp8"], "--precision must be one of"),
        (["--engine", "onnx"], "unknown engine 'onnx'; did you mean onnxruntime?"),
        (["--forward-threads", "0"], "--forward-threads must be at least 1"),
    ],
)
def test_bad_options_are_one_line_exit_2(cli, small_run, args, message) -> None:
    result = cli("serve", small_run, *args, code=2)
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1


def test_without_the_serve_extra_one_line_names_the_pip_command(cli, small_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    result = cli("serve", small_run, code=2)
    assert result.stderr == ("error: zoo serve needs prometheus-client: pip install 'zoo[serve]'\n")


def test_served_images_get_the_pixels_training_saw(tmp_path) -> None:
    from zoo.data.decoder import decode_image
    from zoo.plugins.components import resolve
    from zoo.serve.decoding import decode

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        photo = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
        Image.fromarray(photo).save(tmp_path / name / "big.jpg", quality=90)  # draft-decoded
    splits = resolve("dataset", f"folder:root={tmp_path}").build(
        image_size=(32, 40), seed=0, val_fraction=0.0, download=False
    )
    for path, pixels in zip(splits.train.paths, splits.train.images, strict=True):
        served = decode(Path(path).read_bytes(), None, (32, 40), 3, 10**9)
        assert np.array_equal(served, decode_image(Path(path), (32, 40), 3))
        assert np.array_equal(served, pixels.numpy())


def test_the_page_predicts_a_dropped_image_in_chromium(served, scans, tmp_path) -> None:
    from browser import Browser

    drop = """
    new Promise((done, fail) => {
      document.addEventListener("zoo:done", () => done(
        [...document.querySelectorAll("#results .card")].map(card => ({
          name: card.querySelector(".name").textContent,
          state: card.dataset.state,
          rows: [...card.querySelectorAll(".row")].map(r => [r.dataset.class,
            Number(r.dataset.probability), r.querySelector(".fill").style.width]),
        }))));
      const files = %s.map(([name, data]) => new File(
        [Uint8Array.from(atob(data), c => c.charCodeAt(0))], name, {type: "image/png"}));
      const transfer = new DataTransfer();
      files.forEach(f => transfer.items.add(f));
      document.getElementById("drop").dispatchEvent(
        new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    })
    """
    shown = {"seven.png": scans[7], "three.png": scans[3]}
    files = json.dumps([[n, base64.b64encode(d).decode()] for n, d in shown.items()])
    with Browser(tmp_path / "profile", width=1000, height=520) as browser:
        browser.open(f"http://127.0.0.1:{served.port}/")
        assert browser.evaluate("document.body.dataset.ready") == "true"
        cards = browser.evaluate(drop % files)
        title = browser.evaluate(  # once the page has read /info
            "new Promise(r => document.body.dataset.info ? r() : "
            "document.addEventListener('zoo:info', r)).then(() => "
            "document.getElementById('title').textContent)"
        )
        picture = browser.screenshot()
    assert "zoo:simplecnn" in title
    assert sorted(c["name"] for c in cards) == sorted(shown) and {c["state"] for c in cards} == {
        "done"
    }
    for card in cards:
        _, answer = call(served.port, "POST", "/predict", shown[card["name"]])
        expected = [(p["class"], p["probability"]) for p in answer[0]["predictions"]]
        assert [(c, p) for c, p, _ in card["rows"]] == expected
        widths = [float(w.removesuffix("%")) for _, _, w in card["rows"]]  # the bars
        assert widths == pytest.approx([round(100 * p, 1) for _, p in expected])
    image = np.asarray(Image.open(io.BytesIO(picture)).convert("RGB"))
    assert image.shape == (520, 1000, 3) and len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    target = os.environ.get("ZOO_SCREENSHOTS")  # the docs' picture: ZOO_SCREENSHOTS=docs/img
    if target:
        (Path(target) / "serve-page.png").write_bytes(picture)


def test_a_model_that_fails_to_load_is_one_line_exit_1(small_run, tmp_path) -> None:
    from zoo.models.weights import load_tensors, read_header, save

    info = read_header(small_run / "model.safetensors").info
    info.arch = "gone:net"  # a plugin uninstalled since: the file is fine, the build fails
    save(tmp_path / "model.safetensors", load_tensors(small_run / "model.safetensors"), info)
    proc = subprocess.run(
        [sys.executable, "-m", "zoo", "serve", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("serving ") and lines[-1].startswith(
        f"error: loading {tmp_path} failed: no plugin 'gone' provides architectures"
    )
    assert "Traceback" not in proc.stderr
