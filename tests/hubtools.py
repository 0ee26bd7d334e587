"""Stand-ins for the Hugging Face Hub, so that tests never reach the network: a cache entry laid
out on disk exactly as huggingface_hub writes one, and a small HTTP server on 127.0.0.1 that
answers what huggingface_hub asks of the Hub (``HF_ENDPOINT``): file metadata and downloads,
with the Hub's headers and error codes, and the upload API that ``zoo push`` calls.

huggingface_hub reads its environment (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``)
once, when imported; ``hub_environment`` sets it for a test and re-reads it (reloading
``huggingface_hub.constants`` in place), then restores both.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def commit_of(files: dict[str, bytes]) -> str:
    """A 40-hex commit id that depends on the files (as a git commit would)."""
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def cache_entry(
    cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main", kind: str = "models"
) -> Path:
    """Write ``files`` into a Hugging Face cache (``HF_HUB_CACHE``) as huggingface_hub would
    after downloading them: ``models--ORG--NAME/blobs/<sha256>`` (``datasets--`` for a dataset
    repository), ``snapshots/<commit>/<file>`` symlinks to the blobs, and ``refs/<revision>``
    holding the commit. Returns the snapshot."""
    repo = cache / (f"{kind}--" + repo_id.replace("/", "--"))
    commit = commit_of(files)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


def timm_files(model_name: str, seed: int = 0, **kwargs: object) -> dict[str, bytes]:
    """``model.safetensors`` and ``config.json`` of a timm model with random weights, as timm
    itself saves them for the Hub (``save_for_hf``), under its pretrained tag's config."""
    import tempfile

    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    net = timm.create_model(model_name, pretrained=False, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        save_for_hf(net, tmp, safe_serialization=True)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def folder_files(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (Path(folder) / name).read_bytes() for name in names}


@contextlib.contextmanager
def hub_environment(**env: str | None) -> Iterator[None]:
    """Set huggingface_hub's environment variables (None removes one) for the duration, in
    this process (re-read by huggingface_hub) and for the processes it starts."""
    import huggingface_hub.constants

    saved = {k: os.environ.get(k) for k in env}
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        importlib.reload(huggingface_hub.constants)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        importlib.reload(huggingface_hub.constants)


@dataclass
class Repo:
    """A model repository: revision name -> files (the commit id follows from the files)."""

    revisions: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: bool = False

    def commit(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        for files in self.revisions.values():
            if commit_of(files) == revision:
                return revision, files
        files = self.revisions.get(revision)
        return (commit_of(files), files) if files is not None else None


class FakeHub:
    """The Hub's HTTP API, as much of it as zoo's downloads and uploads use, on 127.0.0.1.

    ``requests`` records ``(method, path)`` of every request, so tests can check what was
    fetched (only safetensors weights and config.json) and that a cache hit fetches nothing.
    Without ``error_codes``, errors come without the Hub's ``X-Error-Code`` (as from a proxy).
    """

    def __init__(self, error_codes: bool = True) -> None:
        self.error_codes = error_codes
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._resolve(self, body=False)

            def do_GET(self) -> None:
                hub._resolve(self, body=True)

            def do_POST(self) -> None:
                hub._post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
        repo = self.repos.setdefault(repo_id, Repo())
        repo.revisions[revision] = dict(files)
        return commit_of(files)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- downloads: HEAD/GET /{repo}/resolve/{revision}/{file} -----------------------------

    def _resolve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append((handler.command, path))
        parts = path.strip("/").split("/")
        if "resolve" not in parts:
            return self._error(handler, 404, "RepoNotFound")
        at = parts.index("resolve")
        repo_id, revision, name = "/".join(parts[:at]), parts[at + 1], "/".join(parts[at + 2 :])
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(handler, 404, "RepoNotFound")
        if repo.gated:
            return self._error(handler, 401, "GatedRepo")
        found = repo.commit(revision)
        if found is None:
            return self._error(handler, 404, "RevisionNotFound")
        commit, files = found
        if name not in files:
            return self._error(handler, 404, "EntryNotFound", commit)
        data = files[name]
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", commit)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def _error(
        self, handler: BaseHTTPRequestHandler, status: int, code: str, commit: str | None = None
    ) -> None:
        payload = json.dumps({"error": code}).encode()
        handler.send_response(status)
        if self.error_codes:
            handler.send_header("X-Error-Code", code)
            handler.send_header("X-Error-Message", code)
        if commit:
            handler.send_header("X-Repo-Commit", commit)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)

    # --- uploads: create repo, branch, preupload, commit -----------------------------------

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append((handler.command, path))
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if not handler.headers.get("authorization"):
            return self._error(handler, 401, "Unauthorized")
        if path == "/api/repos/create":
            request = json.loads(raw or b"{}")
            repo_id = f"{request.get('organization')}/{request['name']}"
            self.repos.setdefault(repo_id, Repo()).revisions.setdefault("main", {})
            return self._json(handler, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id})
        if path == "/api/validate-yaml":
            return self._json(handler, {})
        parts = path.strip("/").split("/")  # api, models, ORG, NAME, verb, revision...
        repo_id, verb, rest = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(handler, 404, "RepoNotFound")
        if verb == "branch":
            repo.revisions.setdefault(rest, dict(repo.revisions.get("main", {})))
            return self._json(handler, {})
        if verb == "preupload":
            files = json.loads(raw)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
            ]
            return self._json(handler, {"files": modes, "commitOid": None})
        if verb == "commit":
            revision = rest
            files = dict(repo.revisions.get(revision, {}))
            for line in raw.decode().splitlines():
                item = json.loads(line)
                if item.get("key") == "file":
                    value = item["value"]
                    files[value["path"]] = base64.b64decode(value["content"])
            repo.revisions[revision] = files
            commit = commit_of(files)
            return self._json(
                handler,
                {
                    "commitUrl": f"{self.endpoint}/{repo_id}/commit/{commit}",
                    "commitOid": commit,
                    "success": True,
                },
            )
        return self._error(handler, 404, "NotFound")

    def _json(self, handler: BaseHTTPRequestHandler, data: object) -> None:
        payload = json.dumps(data).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
