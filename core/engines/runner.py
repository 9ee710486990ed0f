"""A native engine's model in a process of its own, so a crash in its C++ ends one request, never the server.

llama.cpp runs inside the Python process that calls it. In the app that is the Streamlit server: a segfault in
llama.cpp (as its AMX repack gives, ggml-org/llama.cpp#20824) would end every user's session. So, as Ollama runs
one runner per model, :class:`RunnerLM` starts ``python -m core.engines.runner`` per loaded model, loads the model
there, and forwards the engine runner's calls (:class:`core.engines.generate.EngineLM`) over a socket pair,
streaming generated tokens one by one. When the runner dies (a signal, an abort, an OOM kill) the call raises
:class:`core.errors.EngineStopped` with one line, and the next call starts a fresh runner.

A runner that dies during its very first load and warm-up on this machine marks its engine as failing here
(:func:`failing`), with the reason, so ``auto`` picks the next engine instead of crashing again. The mark is kept
per machine (CPU model, flags and the engine's version) in the data folder.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Iterator, Sequence

from core.config import get_settings
from core.cpu import machine_key as cpu_machine_key
from core.errors import EngineStopped
from core.measure import PeakMB, PeakTracker

ROOT = Path(__file__).resolve().parents[2]
LOAD_TIMEOUT_S = 300.0  # the longest a load and warm-up may take before the runner is taken for hung
ANSWER_TIMEOUT_S = 120.0  # the longest one call or one generated token may take
# Tokens go to the server in small batches: a wake-up of the server's thread per token took a core from the
# runner's threads on 2 cores (0.91x in-process tokens/s when each token was sent alone). 30 ms is below what a
# reader of the stream notices, and the first token still goes at once.
SEND_EVERY_S = 0.03
HEALTH_FILE = "engine_health.json"
PACKAGES = {"llama.cpp": "llama-cpp-python", "ctranslate2": "ctranslate2"}


def _how(returncode: int | None) -> str:
    """``signal 11, SIGSEGV``, ``exit code 3`` or ``stopped answering`` for a runner's end."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            return f"signal {-returncode}, {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


# --- which engines fail on this machine --------------------------------------------------------------
def machine_key(engine: str) -> str:
    """What identifies this machine for ``engine``'s health (:func:`core.cpu.machine_key` of its package)."""
    return cpu_machine_key(PACKAGES.get(engine, engine))


def _health_path() -> Path:
    return get_settings().data_dir / HEALTH_FILE


def _health() -> dict:
    try:
        return json.loads(_health_path().read_text())
    except (OSError, ValueError):
        return {}


def _set_health(engine: str, entry: dict) -> None:
    path = _health_path()
    health = _health()
    health[machine_key(engine)] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(health, indent=1))
    os.replace(temporary, path)


def failing(engine: str) -> str:
    """Why ``engine`` is marked as failing on this machine ("" when it is not)."""
    return _health().get(machine_key(engine), {}).get("failed", "")


def _worked_here(engine: str) -> bool:
    return bool(_health().get(machine_key(engine), {}).get("worked"))


# --- the parent's side --------------------------------------------------------------------------------
def _stop(process: subprocess.Popen, conn: Connection) -> None:
    """End a runner process (used when its handle is dropped, e.g. evicted from the model cache)."""
    try:
        conn.close()
    except OSError:
        pass
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RunnerLM:
    """An engine runner (see :class:`core.engines.generate.EngineLM`) that lives in a child process.

    Args:
        engine: the engine name (``llama.cpp``).
        title: what messages call the engine.
        loader: ``module:function`` that builds the runner in the child from ``args``.
        args: picklable arguments of ``loader``.

    Attributes:
        engine, context, eos_ids, label, size_mb: the child runner's, read when it started.
        last_peak: the runner process's own peak memory (a :class:`core.measure.PeakMB`) during the last
            generation, so the result card counts the runner's memory beside the server's.
        restart_s: seconds the last call spent starting a fresh runner (see :meth:`take_restart_s`).
        pid: the runner process's id (None while none runs).
    """

    def __init__(self, engine: str, title: str, loader: str, args: tuple) -> None:
        self.engine, self.title, self.loader, self.args = engine, title, loader, args
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.last_peak: PeakMB | None = None
        self._streamed: tuple[list[int], dict[int, str]] | None = None  # the stream's tokens, and texts by count
        self.restart_s: float | None = None
        self._finalizer = None
        with self.lock:
            self._start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def _start(self) -> None:
        """Start the runner, load the model there and read its attributes (the caller holds the lock)."""
        ours, theirs = socket.socketpair()
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core.engines.runner", str(theirs.fileno())], pass_fds=[theirs.fileno()],
            cwd=ROOT, env=environment, stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        self._finalizer = weakref.finalize(self, _stop, self.process, self.conn)
        self.conn.send(("load", self.loader, self.args))
        try:
            kind, payload = self._receive(LOAD_TIMEOUT_S, while_loading=True)
        except EngineStopped as stopped:
            if not _worked_here(self.engine):
                _set_health(self.engine, {"failed": f"its runner stopped during its first load and warm-up here ({stopped.how})"})
            raise
        if kind == "error":
            self._end()
            raise RuntimeError(payload)
        for name, value in payload.items():
            setattr(self, name, value)
        if not _worked_here(self.engine):
            _set_health(self.engine, {"worked": True})

    def _end(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self.process = self.conn = None

    def _receive(self, timeout_s: float, while_loading: bool = False):
        """The runner's next message; raises EngineStopped (and forgets the runner) when it has died."""
        try:
            if self.conn.poll(timeout_s):
                return self.conn.recv()
            self.process.kill()  # hung: counted as stopped
        except (EOFError, OSError):
            pass
        try:
            returncode = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            returncode = None
        how = _how(returncode)
        self._end()
        when = " while loading the model" if while_loading else ""
        raise EngineStopped(f"The {self.title} runner stopped{when} ({how}); the next request starts it again.", how=how)

    def _ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            if self.process is not None:
                self._end()
            started = time.perf_counter()
            self._start()
            self.restart_s = time.perf_counter() - started

    def take_restart_s(self) -> float | None:
        """Seconds spent starting a fresh runner (after the last one died) since this was last asked; None if none."""
        seconds, self.restart_s = self.restart_s, None
        return seconds

    def _call(self, name: str, *args):
        with self.lock:
            self._ensure_running()
            self.conn.send(("call", name, args))
            kind, payload = self._receive(ANSWER_TIMEOUT_S)
        if kind == "error":
            raise RuntimeError(payload)
        return payload

    def prompt_ids(self, prompt: str) -> list[int]:
        return self._call("prompt_ids", prompt)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; during a stream, the text of its tokens so far comes with them (no round trip)."""
        ids = list(ids)
        if self._streamed is not None:
            n = len(ids)
            if ids == self._streamed[0][:n] and n in self._streamed[1]:
                return self._streamed[1][n]
            raise RuntimeError("While a runner streams, only the text of the tokens it has streamed can be read.")
        return self._call("decode", ids)

    def forced_argmax(self, ids: Sequence[int], start: int) -> list[int]:
        return self._call("forced_argmax", list(ids), start)

    def chat_ids(self, messages: list[dict]) -> list[int] | None:
        return self._call("chat_ids", messages)

    def token_ids(self, texts: Sequence[str], add_special: bool = False) -> list[list[int]]:
        return self._call("token_ids", list(texts), add_special)

    def score_continuations(self, ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        return self._call("score_continuations", list(ids), [list(c) for c in continuations])

    def memory_mb(self) -> float:
        """The runner process's resident memory now (0 while none runs)."""
        import psutil

        try:
            return psutil.Process(self.pid).memory_info().rss / 2**20 if self.pid else 0.0
        except psutil.Error:
            return 0.0

    def generate_ids(self, ids: Sequence[int], settings) -> Iterator[int]:
        """Stream sampled token ids from the runner; closing early tells it to stop at its next token."""
        with self.lock:
            self._ensure_running()
            self.conn.send(("generate", list(ids), settings))
            finished = False
            self._streamed = streamed = ([], {0: ""})
            try:
                while True:
                    kind, payload = self._receive(ANSWER_TIMEOUT_S)
                    if kind == "tokens":
                        for token, text in payload:
                            streamed[0].append(token)
                            streamed[1][len(streamed[0])] = text
                            yield token
                    elif kind == "end":
                        finished = True
                        self.last_peak = PeakMB(*payload)
                        return
                    else:
                        finished = True
                        raise RuntimeError(payload)
            finally:
                self._streamed = None
                if not finished and self.conn is not None:  # the reader stopped early: stop the runner too
                    try:
                        self.conn.send(("stop",))
                        while self._receive(ANSWER_TIMEOUT_S)[0] != "end":
                            pass
                    except EngineStopped:
                        pass

    def close(self) -> None:
        """Stop the runner process."""
        with self.lock:
            self._end()


# --- the child's side ---------------------------------------------------------------------------------
def _serve(conn: Connection) -> None:
    """Load the model asked for, then answer calls until the parent goes away."""
    _, loader, args = conn.recv()
    module, _, function = loader.partition(":")
    try:
        lm = getattr(importlib.import_module(module), function)(*args)
    except Exception as err:  # a Python error while loading is an answer, not a crash
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", {name: getattr(lm, name) for name in ("engine", "context", "eos_ids", "label", "size_mb")
                         if hasattr(lm, name)}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "call":
            _, name, call_args = message
            try:
                conn.send(("ok", getattr(lm, name)(*call_args)))
            except Exception as err:
                conn.send(("error", f"{type(err).__name__}: {err}"))
        elif message[0] == "generate":
            _generate(conn, lm, *message[1:])


def _generate(conn: Connection, lm, ids: list[int], settings) -> None:
    """Send tokens as they are sampled, with the text so far (the first at once, then at most every
    :data:`SEND_EVERY_S`); stop early when the parent says so; end with this process's peak memory."""
    with PeakTracker() as tracker:
        tokens, generated, waiting, sent_at = lm.generate_ids(ids, settings), [], [], 0.0
        try:
            for token in tokens:
                generated.append(token)
                waiting.append((token, lm.decode(generated)))
                if time.perf_counter() - sent_at >= SEND_EVERY_S:
                    conn.send(("tokens", waiting))
                    waiting, sent_at = [], time.perf_counter()
                if conn.poll() and conn.recv()[0] == "stop":
                    break
            if waiting:
                conn.send(("tokens", waiting))
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {err}"))
            return
        finally:
            tokens.close()
    conn.send(("end", (float(tracker.peak_mb), tracker.peak_mb.start_mb)))


def main(fd: int) -> None:
    """The runner process: serve on socket ``fd`` until the parent closes it."""
    conn = Connection(fd)
    try:
        _serve(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
