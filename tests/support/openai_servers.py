"""OpenAI-compatible servers on 127.0.0.1 for the hosted-inference tests.

* :func:`llama_server` starts the real thing: llama.cpp's server (``llama-cpp-python[server]``, installed by
  ``make test``) serving the packaged SmolLM2 GGUF, optionally with an API key it checks.
* :func:`whisper_server` starts a second real one: ``faster-whisper-server`` (an OpenAI-compatible
  ``/v1/audio/transcriptions``, installed by ``make test``) serving the packaged Whisper tiny.en, offline.
* :class:`RecordedServer` replays responses RECORDED from the providers' documented schemas, for what a real
  local server does not do on demand: 404 for an unknown model, 429 with Retry-After, 5xx, a stream cut in the
  middle, a malformed or oversized body, a slow answer; and for the providers that cannot run here (OpenAI's
  images and audio, Hugging Face's text-to-image, Replicate's predictions). Tests that use it say "recorded" in
  their names.
"""
from __future__ import annotations

import base64
import importlib.util
import io
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

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def packaged_gguf() -> Path | None:
    from core import registry
    from core.catalog import get_spec

    return registry.packaged_path(get_spec("smollm2-135m"))


KEY = "sk-PLANTED-0123456789abcdef"  # the key the tests plant, then look for where it must never appear
needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or packaged_gguf() is None,
    reason="llama-cpp-python[server] or the packaged SmolLM2 GGUF is not installed (make test installs both)",
)


@contextmanager
def _serving(command: list[str], env: dict, log_path: Path | None, name: str, ready_path: str,
             headers: dict | None = None, up_codes: tuple[int, ...] = ()):
    """Run ``command`` (a server that takes ``--port``) on a free loopback port until ``ready_path`` answers (or
    answers with one of ``up_codes``); yield its base URL, stop it on the way out."""
    port = free_port()
    log = open(log_path, "w+") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(command + ["--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{url}{ready_path}", headers=headers or {}), timeout=1)
                break
            except OSError as err:
                if getattr(err, "code", None) in up_codes:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start (exit {proc.poll()})") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def llama_server(api_key: str | None = None, log_path: Path | None = None, threads: int = 1):
    """llama.cpp's OpenAI-compatible server on a free loopback port; yields its base URL (``.../v1``)."""
    command = [sys.executable, "-m", "tests.support.llama_server_main", "--model", str(packaged_gguf()), "--host", "127.0.0.1",
               "--n_threads", str(threads), "--n_ctx", "1024", "--verbose", "false"]
    if api_key:
        command += ["--api_key", api_key]
    root = str(Path(__file__).resolve().parents[2])
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with _serving(command, environment, log_path, "llama.cpp server", "/v1/models",
                  headers={"Authorization": f"Bearer {api_key or 'x'}"}, up_codes=(401,)) as url:  # 401: up, checking keys
        yield f"{url}/v1"


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
    Each request's path, headers and body are kept in ``requests``. ``routes`` answers by path instead: a request
    whose path ends with one of its keys always gets that response (one server for several pages' calls).
    """

    def __init__(self, responses: list[dict], routes: dict[str, dict] | None = None) -> None:
        self.responses, self.requests, self.routes = list(responses), [], routes or {}
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
                routed = [answer for path, answer in owner.routes.items() if self.path.endswith(path)]
                spec = routed[0] if routed else owner.responses.pop(0) if len(owner.responses) > 1 else owner.responses[0]
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
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.root}/v1"

    def __enter__(self) -> "RecordedServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def recorded_stream(pieces: list[str], prompt_tokens: int = 7, cut: bool = False, usage: bool = True) -> dict:
    """A chat stream (OpenAI schema, with the usage chunk ``stream_options.include_usage`` asks for, unless
    ``usage`` is False: some servers send none)."""
    events = [_chunk(p) for p in pieces]
    if not cut and usage:
        events.append(_chunk(usage={"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                                    "total_tokens": prompt_tokens + len(pieces)}))
    return {"stream": events, "cut": cut}


def recorded_error(status: int, message: str, headers: dict | None = None) -> dict:
    """An OpenAI-style error body (``{"error": {"message", "type", "code"}}``)."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": status}}).encode()
    return {"status": status, "body": body, "headers": headers or {}}


# --- media: recordings of the documented schemas ------------------------------------------------------
def png(width: int = 8, height: int = 8, color=(200, 40, 40)) -> bytes:
    """A small real PNG, as an images endpoint would send."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def recorded_json(body: dict, status: int = 200, headers: dict | None = None) -> dict:
    return {"status": status, "body": json.dumps(body).encode(), "headers": headers or {}}


def recorded_openai_image(data: bytes) -> dict:
    """``POST /v1/images/generations`` with base64 output (OpenAI's documented ImagesResponse)."""
    return recorded_json({"created": 1764000000, "data": [{"b64_json": base64.b64encode(data).decode(),
                                                          "revised_prompt": None}],
                          "usage": {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210}})


def recorded_hf_image(data: bytes, content_type: str = "image/png") -> dict:
    """Hugging Face's ``hf-inference`` text-to-image route: the image bytes themselves."""
    return {"body": data, "headers": {"Content-Type": content_type}}


def recorded_hf_error(status: int, message: str) -> dict:
    """Hugging Face's error body (``{"error": "..."}``)."""
    return recorded_json({"error": message}, status)


def recorded_prediction(status: str = "succeeded", output=None, get_url: str = "", error: str | None = None) -> dict:
    """A Replicate prediction (documented schema), as ``POST /v1/models/{owner}/{name}/predictions`` returns it."""
    return recorded_json({
        "id": "rec0prediction", "model": "black-forest-labs/flux-schnell", "version": "dp-rec", "input": {"prompt": "x"},
        "logs": "", "output": output, "data_removed": False, "error": error, "status": status,
        "created_at": "2026-11-20T10:00:00.000Z",
        "urls": {"get": get_url, "cancel": f"{get_url}/cancel", "stream": ""},
        "metrics": {"predict_time": 0.61, "total_time": 0.64} if status == "succeeded" else {},
    }, 201 if status != "succeeded" else 200)


def recorded_replicate_error(status: int, detail: str, headers: dict | None = None) -> dict:
    """Replicate's problem-details error body."""
    return recorded_json({"title": detail, "detail": detail, "status": status}, status, headers)


def recorded_transcription(text: str, segments: list[tuple[float, float, str]], language: str = "english",
                           duration: float = 10.15) -> dict:
    """``POST /v1/audio/transcriptions`` with ``response_format=verbose_json`` (OpenAI's documented schema)."""
    return recorded_json({"task": "transcribe", "language": language, "duration": duration, "text": text,
                          "segments": [{"id": i, "seek": 0, "start": a, "end": b, "text": t, "tokens": [50364],
                                        "temperature": 0.0, "avg_logprob": -0.3, "compression_ratio": 1.2,
                                        "no_speech_prob": 0.01} for i, (a, b, t) in enumerate(segments)]})


# --- a real transcription server ------------------------------------------------------------------------
WHISPER_SERVER_PYTHON = os.environ.get("UBT_TEST_WHISPER_SERVER_PYTHON", sys.executable)


def whisper_server_installed() -> bool:
    """Whether faster-whisper-server is installed where :func:`whisper_server` runs it."""
    if WHISPER_SERVER_PYTHON == sys.executable:
        return importlib.util.find_spec("faster_whisper_server") is not None
    return subprocess.run([WHISPER_SERVER_PYTHON, "-c", "import faster_whisper_server"], capture_output=True).returncode == 0


def packaged_whisper() -> Path | None:
    from core import registry
    from core.catalog import get_spec

    return registry.packaged_path(get_spec("faster-whisper-tiny-en"))


@contextmanager
def whisper_server(log_path: Path | None = None):
    """faster-whisper-server on a free loopback port serving the packaged tiny.en; yields its base URL (``.../v1``).

    It takes no key (the package has no key check) and ignores the ``model`` field: it serves the one model it
    was started with. ``UBT_TEST_WHISPER_SERVER_PYTHON`` may name another environment's python that has it.
    """
    command = [WHISPER_SERVER_PYTHON, "-m", "faster_whisper_server", str(packaged_whisper()), "--host", "127.0.0.1",
               "--log-level", "info"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with _serving(command, env, log_path, "faster-whisper-server", "/health") as url:
        yield f"{url}/v1"
