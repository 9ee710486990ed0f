"""A loopback server that serves model repositories the way the Hugging Face Hub does, for tests.

It answers the requests huggingface_hub 2.4 makes to list and download a model, with the Hub's headers:

- ``HEAD /``: 200 (any answer means the Hub is reachable);
- ``GET /api/models/<repo>[/revision/<rev>]``: ``id``, ``sha`` (the commit), ``siblings``;
- ``GET /api/models/<repo>/tree/<rev>[/<path>]?recursive=true``: files with ``size`` and ``oid``;
- ``HEAD`` / ``GET /<repo>/resolve/<rev>/<file>``: ``ETag``, ``X-Repo-Commit``, ``Content-Length``,
  ``Accept-Ranges``; a ``Range: bytes=N-`` request gets ``206`` with ``Content-Range``.

Plain files (``raw``: URL path -> file) are served the same way, as openai-whisper's host serves its
checkpoints. A gated repository answers its files with 401 and ``X-Error-Code: GatedRepo`` unless the
request carries ``Authorization: Bearer <token>``. Faults for tests: ``drop_after`` closes the connection
once per file after that many body bytes (huggingface_hub then resumes with a Range request);
``fail_get`` answers GET requests for those file names with 500; ``chunk_delay_s`` slows the body down so
that progress can be watched. Every request is recorded in ``requests``.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
DECOYS = ("pytorch_model.bin", "tf_model.h5", "onnx/model.onnx", "README.md")
"""Files a Hub repository holds that this app never needs: a download must skip them."""


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    range: str | None
    authorization: str | None


class HubServer:
    """Serve folders as Hub model repositories on 127.0.0.1; use as a context manager.

    Args:
        repos: repo id -> folder whose files (recursively) make the repository.
        token: the token a gated repository accepts.
        gated: repo ids that need the token.
        raw: URL path -> file, served outside any repository.
        drop_after: close the connection after this many body bytes, once per file (None: never).
        fail_get: file names whose GET answers 500 (the HEAD still answers), until the set is emptied.
        chunk_delay_s: pause after each 64 KiB of a file body.
    """

    def __init__(self, repos: dict[str, Path], token: str | None = None, gated: tuple[str, ...] = (),
                 raw: dict[str, Path] | None = None, drop_after: int | None = None, fail_get: set[str] | None = None,
                 chunk_delay_s: float = 0.0) -> None:
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.token, self.gated = token, set(gated)
        self.raw = {path: Path(file) for path, file in (raw or {}).items()}
        self.drop_after, self.chunk_delay_s = drop_after, chunk_delay_s
        self.fail_get = fail_get if fail_get is not None else set()
        self.requests: list[Request] = []
        self._dropped: set[str] = set()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def commit(self, repo: str) -> str:
        """The repository's commit: a hash of its file names and contents (40 hex digits, like git)."""
        digest = hashlib.sha1(repo.encode())
        for name, path in self.files(repo).items():
            digest.update(name.encode() + path.read_bytes())
        return digest.hexdigest()

    def files(self, repo: str) -> dict[str, Path]:
        """Repository path -> file on disk."""
        folder = self.repos[repo]
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}

    def file_requests(self, name: str) -> list[Request]:
        """The GET requests for one file (by its path in the repository)."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + name) and not r.path.startswith("/api/")]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._route(head=True)

            def do_GET(self) -> None:
                self._route(head=False)

            def _route(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                with server._lock:
                    server.requests.append(Request(self.command, path, self.headers.get("Range"), self.headers.get("Authorization")))
                if path in ("", "/"):
                    return self._send(200, b"Hub-like test server\n", "text/plain", head=head)
                if path in server.raw:
                    return self._body(path.rsplit("/", 1)[-1], server.raw[path].read_bytes(), {}, head)
                if m := re.fullmatch(r"/api/models/(.+?)/tree/([^/]+)(/.*)?", path):
                    return self._tree(m.group(1), m.group(3) or "", head)
                if m := re.fullmatch(r"/api/models/(.+?)(?:/revision/([^/]+))?", path):
                    return self._info(m.group(1), head)
                if m := re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path):
                    return self._file(m.group(1), m.group(3), head)
                self._error(404, "EntryNotFound", f"{path} not found", head)

            def _send(self, status: int, body: bytes, kind: str, head: bool, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, data, head: bool) -> None:
                self._send(200, json.dumps(data).encode(), "application/json", head)

            def _error(self, status: int, code: str, message: str, head: bool) -> None:
                body = json.dumps({"error": message}).encode()
                self._send(status, body, "application/json", head, {"X-Error-Code": code, "X-Error-Message": message})

            def _known(self, repo: str, head: bool) -> bool:
                if repo not in server.repos:
                    self._error(404, "RepoNotFound", f"Repository {repo} not found", head)
                    return False
                return True

            def _allowed(self, repo: str, head: bool) -> bool:
                if repo in server.gated and self.headers.get("Authorization") != f"Bearer {server.token}":
                    self._error(401, "GatedRepo", f"Access to model {repo} is restricted. You must have access to it and be authenticated.", head)
                    return False
                return True

            def _info(self, repo: str, head: bool) -> None:
                if self._known(repo, head):
                    self._json({
                        "id": repo, "modelId": repo, "sha": server.commit(repo), "private": False,
                        "gated": "manual" if repo in server.gated else False,
                        "siblings": [{"rfilename": name} for name in server.files(repo)],
                    }, head)

            def _tree(self, repo: str, sub: str, head: bool) -> None:
                if not self._known(repo, head):
                    return
                prefix = sub.strip("/")
                entries, folders = [], set()
                for name, file in server.files(repo).items():
                    if prefix and not name.startswith(prefix + "/"):
                        continue
                    parent = name.rsplit("/", 1)[0] if "/" in name else ""
                    while parent and parent not in folders:
                        folders.add(parent)
                        entries.append({"type": "directory", "oid": hashlib.sha1(parent.encode()).hexdigest(), "size": 0, "path": parent})
                        parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
                    data = file.read_bytes()
                    entries.append({"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": name})
                self._json(entries, head)

            def _file(self, repo: str, name: str, head: bool) -> None:
                if not self._known(repo, head) or not self._allowed(repo, head):
                    return
                file = server.files(repo).get(name)
                if file is None:
                    return self._error(404, "EntryNotFound", f"{name} not found in {repo}", head)
                self._body(name, file.read_bytes(), {"X-Repo-Commit": server.commit(repo)}, head)

            def _body(self, name: str, data: bytes, headers: dict, head: bool) -> None:
                if not head and name in server.fail_get:
                    return self._error(500, "Internal", "simulated server error", head)
                headers = {**headers, "ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes"}
                start = 0
                if (wanted := self.headers.get("Range")) and (m := re.fullmatch(r"bytes=(\d+)-", wanted)):
                    start = int(m.group(1))
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if head:
                    return
                drop = server.drop_after if server.drop_after is not None and name not in server._dropped else None
                sent = 0
                for offset in range(0, len(body), CHUNK):
                    piece = body[offset:offset + CHUNK]
                    if drop is not None and sent + len(piece) > drop:
                        self.wfile.write(piece[: max(drop - sent, 0)])
                        self.wfile.flush()
                        with server._lock:
                            server._dropped.add(name)
                        self.close_connection = True
                        return
                    self.wfile.write(piece)
                    sent += len(piece)
                    if server.chunk_delay_s:
                        time.sleep(server.chunk_delay_s)

        return Handler


def sentiment_repo(folder: Path) -> Path:
    """Write a tiny DistilBERT sentiment checkpoint (about 1.7 MB of safetensors, SST-2's labels) and the decoys.

    It stands in for ``distilbert/distilbert-base-uncased-finetuned-sst-2-english``: the same classes and
    files, scaled down, seeded.
    """
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from tests.support import tiny

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tokenizer = tiny.wordpiece_tokenizer()
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=128, hidden_dim=512, n_layers=2, n_heads=2, max_position_embeddings=64,
        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for name in DECOYS:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"not for this app" * 1000)
    return folder
