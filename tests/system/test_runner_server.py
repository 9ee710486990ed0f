"""A crash of llama.cpp's runner during a Generate, against the real app server (tests/support/serve_tiny.py) and real
websocket sessions (tests/support/st_session.py): the runner gets SIGSEGV or SIGKILL in the middle of the stream; the page
shows one line, the server still answers its health check, another session's Classify answers, and the next
Generate works on a fresh runner."""
import os
import signal
import threading
import time
import urllib.request

import psutil
import pytest

from tests.support.serve_tiny import tiny_server
from tests.support.st_session import Session
from tests.support.openai_servers import needs_llama

pytestmark = [pytest.mark.browser, pytest.mark.real_model, needs_llama]

LONG = {"generation_prompt": "Tell me a long story about a lighthouse keeper and the sea.",
        "generation_max_new_tokens": [256], "generation_temperature": [0.7]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with tiny_server(tmp_path_factory.mktemp("runner")) as running:
        yield running


def runner_cpu(server_pid: int) -> tuple[psutil.Process | None, float]:
    """The server's llama.cpp runner process and the CPU seconds it has used (None, 0 while none runs)."""
    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            if "core.engines.runner" in " ".join(child.cmdline()):
                return child, child.cpu_times().user
        except psutil.Error:
            continue
    return None, 0.0


def runner_of(server_pid: int, used_before: float, timeout_s: float = 120.0) -> psutil.Process:
    """The server's llama.cpp runner process, once it has used 0.5 s of CPU more than ``used_before``: decoding,
    since it was loaded and warmed up before."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runner, used = runner_cpu(server_pid)
        if runner is not None and used > used_before + 0.5:
            return runner
        time.sleep(0.05)
    raise TimeoutError("no busy llama.cpp runner under the server")


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
def test_a_runner_killed_during_a_generate_costs_one_line_and_nothing_else(server, sig):
    with Session(server.url, "text", timeout_s=300) as generating, Session(server.url, "text", timeout_s=300) as other:
        generating.run(), other.run()  # learn the widgets' ids
        other.run({"sentiment_text": "I love this movie."}, click="sentiment_run")  # loads the sentiment model first
        warm = generating.run({"generation_max_new_tokens": [4]}, click="generation_run")  # the runner is up and warm
        assert warm.ok and not warm.alerts("ERROR"), warm.alerts("ERROR")
        _, used = runner_cpu(server.pid)
        generating.run(LONG)
        done = {}
        worker = threading.Thread(target=lambda: done.update(run=generating.run(click="generation_run")))
        worker.start()
        victim = runner_of(server.pid, used)  # 0.5 s of CPU into this Generate: the stream is under way
        os.kill(victim.pid, sig)
        worker.join(300)
        crashed = done["run"]
        assert crashed.ok, crashed.exceptions  # no traceback: the page finished its run
        errors = crashed.alerts("ERROR")
        assert errors == [f"The llama.cpp runner stopped (signal {sig.value}, {sig.name}); the next request starts it again."]
        with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=5) as health:
            assert health.read() == b"ok"
        classified = other.run({"sentiment_text": "This was a waste of money."}, click="sentiment_run")
        assert classified.ok and "Label" in classified.metrics(), classified.alerts("ERROR")
        again = generating.run({"generation_max_new_tokens": [16]}, click="generation_run")
        assert again.ok and not again.alerts("ERROR"), again.alerts("ERROR")
        assert "Tokens/s" in again.metrics(), again.metrics()
        assert psutil.pid_exists(server.pid)
