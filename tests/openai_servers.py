"""OpenAI-compatible servers on 127.0.0.1 for the hosted-inference tests.

* :func:`llama_server` starts the real thing: llama.cpp's server (``llama-cpp-python[server]``, installed by
  ``make test``) serving the packaged SmolLM2 GGUF, optionally with an API key it checks.
* :class:`RecordedServer` replays responses RECORDED from the providers' documented schemas, for what a real
  local server does not do on demand: 404 for an unknown model, 429 with Retry-After, 5xx, a stream cut in the
  middle, a malformed or oversized body, a slow answer. Tests that use it say "recorded" in their names.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def packaged_gguf() -> Path | None:
    from core import registry
    from core.catalog import get_spec

    return registry.packaged_path(get_spec("smollm2-135m"))


@contextmanager
def llama_server(api_key: str | None = None, log_path: Path | None = None, threads: int = 1):
    """llama.cpp's OpenAI-compatible server on a free loopback port; yields its base URL (``.../v1``)."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf()), "--host", "127.0.0.1",
               "--port", str(port), "--n_threads", str(threads), "--n_ctx", "1024", "--verbose", "false"]
    if api_key:
        command += ["--api_key", api_key]
    log = open(log_path, "w+") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": f"Bearer {api_key or 'x'}"})
                urllib.request.urlopen(request, timeout=1)
                break
            except OSError as err:
                if getattr(err, "code", None) == 401:  # up, and checking keys
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama.cpp server did not start (exit {proc.poll()})") from None
                time.sleep(0.2)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _chunk(content: str | None = None, usage: dict | None = None) -> bytes:
    """One server-sent event of an OpenAI chat-completion stream (documented schema)."""
    body = {"id": "chatcmpl-rec", "object": "chat.completion.chunk", "created": 1764000000, "model": "recorded",
            "choices": [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


class RecordedServer:
    """A loopback HTTP server that answers every request with the next scripted response.

    A response is a dict: ``status`` (200), ``headers``, ``body`` (bytes), ``stream`` (a list of SSE chunks,
    then ``cut=True`` to drop the connection without the final ``[DONE]``), ``delay_s``.
    Each request's path, headers and body are kept in ``requests``.
    """

    def __init__(self, responses: list[dict]) -> None:
        self.responses, self.requests = list(responses), []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                try:
                    self._answer()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                owner.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": self.rfile.read(length) if length else b""})
                spec = owner.responses.pop(0) if len(owner.responses) > 1 else owner.responses[0]
                time.sleep(spec.get("delay_s", 0))
                if "stream" in spec:
                    self.send_response(spec.get("status", 200))
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for event in spec["stream"]:
                        self.wfile.write(event)
                        self.wfile.flush()
                    if not spec.get("cut"):
                        self.wfile.write(b"data: [DONE]\n\n")
                    self.close_connection = True
                    return
                body = spec.get("body", b"{}")
                self.send_response(spec.get("status", 200))
                for name, value in {"Content-Type": "application/json", **spec.get("headers", {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "RecordedServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def recorded_stream(pieces: list[str], prompt_tokens: int = 7, cut: bool = False) -> dict:
    """A chat stream (OpenAI schema, with the usage chunk ``stream_options.include_usage`` asks for)."""
    events = [_chunk(p) for p in pieces]
    if not cut:
        events.append(_chunk(usage={"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                                    "total_tokens": prompt_tokens + len(pieces)}))
    return {"stream": events, "cut": cut}


def recorded_error(status: int, message: str, headers: dict | None = None) -> dict:
    """An OpenAI-style error body (``{"error": {"message", "type", "code"}}``)."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": status}}).encode()
    return {"status": status, "body": body, "headers": headers or {}}
