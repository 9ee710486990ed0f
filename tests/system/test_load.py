"""Load and limits against a real server on loopback: concurrent websocket sessions on the Text and
Image-text pages (tiny checkpoints loaded by the app's own loaders), and uploads over the size limit.

The server is tests/support/serve_tiny.py (Streamlit in one process with the shared registry); the sessions
are tests/support/st_session.py clients speaking Streamlit's own protocol. Every loop is bounded. Timings are
reported, never asserted (speed targets live in bench/).
"""
from __future__ import annotations

import http.client
import socket
import sqlite3
import threading
import time
import tomllib
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tests.support.serve_tiny import ROOT, TinyServer, tiny_server
from tests.support.st_session import Run, Session

pytestmark = pytest.mark.browser

SESSIONS = 8
REQUESTS_PER_SESSION = 4
MEMORY_BUDGET_MB = 1800
STREAMLIT_ALLOWANCE_MB = 1000
"""Resident memory allowed beyond the model budget: Python, torch, transformers, open_clip and Streamlit
themselves (about 0.8 GB measured idle with tiny models), plus every session's state and working memory."""
SAMPLE_INTERVAL_S = 0.1

SENTENCES = (
    "I love this movie, the cast is wonderful.",
    "This was a waste of money; it broke after two days.",
    "The food was cold but the staff were lovely.",
    "Best concert ever 🎉🔥",
    "Delivery was on time.",
    "Never buying from them again.",
)
LABEL_SETS = (
    "cat, dog, bird",
    "cup of coffee, rocket, astronaut, temple",
    "indoors, outdoors, outer space",
    "photograph, drawing, painting, diagram",
)


@dataclass(frozen=True)
class Scenario:
    """What one kind of session does on a page.

    Attributes:
        page: the page's URL path.
        button: key of the button that runs the model.
        inputs: widget values for a request, from (session number, request number).
        result_metric: a metric label that only a finished result shows.
        models: catalog keys the request loads.
        setup: widget values to set once, after the page has rendered (e.g. a model picked by its
            option label), from the session.
        name: what the figures call this kind of session (default: the page).
    """

    page: str
    button: str
    inputs: Callable[[int, int], dict]
    result_metric: str
    models: tuple[str, ...]
    setup: Callable[[Session], dict] | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.page


SCENARIOS = (
    Scenario("text", "sentiment_run", lambda s, r: {"sentiment_text": SENTENCES[(s + r) % len(SENTENCES)]},
             "Label", ("distilbert-sst2",)),
    Scenario("image-text", "it_label_run", lambda s, r: {"it_labels": LABEL_SETS[(s + r) % len(LABEL_SETS)]},
             "Images/s", ("clip-vit-b-32",)),
)


@dataclass
class Outcome:
    """One request: which kind of session, how long, what went wrong (empty when it worked), when it was
    sent (``time.perf_counter``), the metrics its result showed and its ``st.info`` notes."""

    page: str
    seconds: float
    problem: str = ""
    sent: float = 0.0
    metrics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _problem(run: Run, scenario: Scenario, idle_warnings: set[str]) -> str:
    if run.status not in ("FINISHED_SUCCESSFULLY", "FINISHED_FRAGMENT_RUN_SUCCESSFULLY"):  # a fragment's run
        return f"script ended with {run.status}"
    if run.exceptions:
        return "exception: " + run.exceptions[0]
    if run.alerts("ERROR"):
        return "error: " + run.alerts("ERROR")[0]
    fresh = set(run.alerts("WARNING")) - idle_warnings
    if fresh:
        return "warning: " + sorted(fresh)[0]
    if scenario.result_metric not in run.metrics():
        return f"no {scenario.result_metric!r} metric in the result"
    return ""


def _session(url: str, number: int, scenario: Scenario, requests: int, start: threading.Barrier,
             end: threading.Barrier, outcomes: list[Outcome], lock: threading.Lock) -> None:
    results: list[Outcome] = []
    try:
        with Session(url, scenario.page, timeout_s=600) as session:
            idle = session.run()
            if scenario.setup is not None and idle.ok:
                idle = session.run(scenario.setup(session))
            rendered = idle.ok
            if not rendered:
                results.append(Outcome(scenario.label, idle.seconds, f"page did not render: {idle.status} {idle.exceptions}"))
            start.wait()
            for request in range(requests if rendered else 0):
                sent = time.perf_counter()
                run = session.run(scenario.inputs(number, request), click=scenario.button)
                results.append(Outcome(scenario.label, run.seconds, _problem(run, scenario, set(idle.alerts("WARNING"))),
                                       sent, run.metrics(), run.alerts("INFO")))
            end.wait()
    except Exception as err:  # a broken session is a finding, reported with the others
        results.append(Outcome(scenario.label, float("nan"), f"{type(err).__name__}: {err}"))
        start.abort()
        end.abort()
    with lock:
        outcomes.extend(results)


def _watch_rss(pid: int, stop: threading.Event, samples: list[float]) -> None:
    import psutil

    process = psutil.Process(pid)
    while not stop.is_set():
        samples.append(process.memory_info().rss / 2**20)
        stop.wait(SAMPLE_INTERVAL_S)


def stored_runs(server: TinyServer) -> list[dict]:
    """The server's run store, read directly (read-only)."""
    path = Path(server.env["UBT_RUNS_DB"])
    if not path.exists():
        return []
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT page, task, model, source, session_id FROM runs")]


def _percentile(values: list[float], share: float) -> float:
    import numpy as np

    return float(np.percentile(values, share)) if values else float("nan")


def drive(server: TinyServer, sessions: int, requests: int, scenarios: tuple[Scenario, ...] = SCENARIOS) -> dict:
    """Hold ``sessions`` websocket sessions at once (spread over the scenarios) and make each send
    ``requests`` requests; measure latency, throughput, server CPU and memory, loads and what was stored.

    Returns:
        The figures, as a dict (what the test asserts on and the reliability report prints); ``first``
        holds, per kind of session, the metrics and notes of its first request sent under load.
    """
    import psutil

    with Session(server.url, "") as first_visitor:  # see test_deep_links_render_through_app_py
        first_visitor.run()
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    start, end = threading.Barrier(sessions + 1), threading.Barrier(sessions + 1)
    stop, rss = threading.Event(), []
    idle_rss = server.stats()["rss_mb"]
    watcher = threading.Thread(target=_watch_rss, args=(server.pid, stop, rss), daemon=True)
    watcher.start()
    workers = [
        threading.Thread(target=_session, args=(server.url, n, scenarios[n % len(scenarios)], requests, start, end, outcomes, lock))
        for n in range(sessions)
    ]
    for worker in workers:
        worker.start()
    server_process = psutil.Process(server.pid)
    try:
        start.wait(timeout=300)  # every session has rendered its page: all are held from here on
        began, cpu_before = time.perf_counter(), sum(server_process.cpu_times()[:2])
        end.wait(timeout=900)
        wall = time.perf_counter() - began
        cpu = sum(server_process.cpu_times()[:2]) - cpu_before
    except threading.BrokenBarrierError:
        wall = cpu = float("nan")
    for worker in workers:
        worker.join(60)
    stop.set()
    watcher.join(5)
    time.sleep(0.6)  # the server rewrites its stats every 0.25 s
    stats, runs = server.stats(), stored_runs(server)
    done = [o for o in outcomes if not o.problem]
    per_page, first = {}, {}
    for scenario in scenarios:
        mine = [o for o in done if o.page == scenario.label]
        seconds = [o.seconds for o in mine]
        per_page[scenario.label] = {
            "requests": len([o for o in outcomes if o.page == scenario.label]), "ok": len(seconds),
            "p50_s": _percentile(seconds, 50), "p95_s": _percentile(seconds, 95),
            "runs_stored": len([r for r in runs if r["page"] == scenario.page]),
        }
        earliest = min(mine, key=lambda o: o.sent) if mine else None
        first[scenario.label] = {"metrics": earliest.metrics, "notes": earliest.notes} if earliest else {}
    seconds = [o.seconds for o in done]
    return {
        "sessions": sessions,
        "sessions_in_store": len({r["session_id"] for r in runs}),
        "requests": sessions * requests,
        "ok": len(done),
        "problems": [f"/{o.page}: {o.problem}" for o in outcomes if o.problem],
        "wall_s": wall,
        "throughput_per_s": len(done) / wall if wall == wall and wall > 0 else float("nan"),
        "server_cpu_per_request_s": cpu / len(done) if done and cpu == cpu else float("nan"),
        "p50_s": _percentile(seconds, 50),
        "p95_s": _percentile(seconds, 95),
        "max_s": max(seconds, default=float("nan")),
        "per_page": per_page,
        "first": first,
        "loads": {key: stats["loads"].get(key, 0) for s in scenarios for key in s.models},
        "all_loads": stats["loads"],
        "cache_used_mb": stats["cache_used_mb"],
        "budget_mb": stats["budget_mb"],
        "allowance_mb": STREAMLIT_ALLOWANCE_MB,
        "rss_idle_mb": idle_rss,
        "rss_peak_mb": max(rss + [stats["peak_rss_mb"]]),
        "rss_samples": len(rss),
        "runs_stored": len(runs),
        "runs_lost": len(done) - len(runs),
        "models_stored": sorted({r["model"] for r in runs}),
    }


def upload_probe(server: TinyServer, session_id: str, size_bytes: int, xsrf: bool = True, declared: bool = True) -> int:
    """PUT a file of ``size_bytes`` to the upload endpoint as a browser would, and return the status.

    Args:
        server: the running server.
        session_id: an active session (uploads belong to one).
        size_bytes: how many bytes to send (streamed in 1 MiB chunks; never held in memory at once).
        xsrf: send the XSRF cookie and header the frontend sends.
        declared: send a Content-Length (False: chunked transfer, so only the streaming cap can stop it).

    Returns:
        The HTTP status code (413 when refused for its size).
    """
    cookie = ""
    if xsrf:
        with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=10) as response:
            cookie = next(c.split(";")[0] for c in response.headers.get_all("Set-Cookie") if c.startswith("_streamlit_xsrf="))
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    host, port = server.url.rsplit("/", 1)[-1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.putrequest("PUT", f"/_stcore/upload_file/{session_id}/{uuid.uuid4().hex}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    if xsrf:
        conn.putheader("Cookie", cookie)
        conn.putheader("X-Xsrftoken", cookie.split("=", 1)[1])
    if declared:
        conn.putheader("Content-Length", str(len(head) + size_bytes + len(tail)))
    else:
        conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"\0" * 2**20
    try:
        for piece in [head] + [chunk[: min(len(chunk), size_bytes - sent)] for sent in range(0, size_bytes, len(chunk))] + [tail]:
            conn.send(piece if declared else b"%x\r\n%s\r\n" % (len(piece), piece))
        if not declared:
            conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass  # the server may answer and close before the whole body is sent
    try:
        return conn.getresponse().status
    finally:
        conn.close()


# --- tests ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with tiny_server(tmp_path_factory.mktemp("load"), env={"UBT_MEMORY_BUDGET_MB": str(MEMORY_BUDGET_MB)}) as running:
        yield running
        log = running.log()
    assert "Traceback" not in log, log[-4000:]


def test_deep_links_render_through_app_py_on_a_fresh_server(server):
    for page in ("image-text", "text"):
        with Session(server.url, page) as session:
            run = session.run()
        assert run.status == "FINISHED_SUCCESSFULLY", f"/{page}: {run.status}"
        assert not run.exceptions
        assert any(body.startswith("**Device:**") for body in (m.body for m in run.of_type("markdown"))), (
            f"/{page} rendered without app.py's sidebar")


def test_concurrent_sessions_on_text_and_image_text(server, record_property):
    figures = drive(server, SESSIONS, REQUESTS_PER_SESSION)  # read at call time: the report script may resize them
    for name, value in figures.items():
        record_property(name, value)
    print("\nload figures:", {k: v for k, v in figures.items() if k != "per_page"}, figures["per_page"])
    assert not figures["problems"], figures["problems"][:5]
    assert figures["ok"] == figures["requests"] == SESSIONS * REQUESTS_PER_SESSION
    assert figures["loads"] == {"distilbert-sst2": 1, "clip-vit-b-32": 1}, figures["all_loads"]
    assert figures["runs_stored"] == figures["ok"] and figures["runs_lost"] == 0
    assert figures["sessions_in_store"] == SESSIONS
    assert figures["models_stored"] == ["clip-vit-b-32", "distilbert-sst2"]
    assert figures["cache_used_mb"] <= figures["budget_mb"]
    assert figures["rss_samples"] > 0
    assert figures["rss_peak_mb"] <= MEMORY_BUDGET_MB + STREAMLIT_ALLOWANCE_MB, figures


def test_uploads_over_the_size_limit_are_refused_and_the_server_keeps_serving(server):
    limit_mb = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    limit = limit_mb * 2**20
    with Session(server.url, "image-text") as session:
        assert session.run().status == "FINISHED_SUCCESSFULLY"
        assert upload_probe(server, session.session_id, 1024) in (200, 204)
        assert upload_probe(server, session.session_id, 1024, xsrf=False) == 403
        assert upload_probe(server, session.session_id, limit + 1) == 413
        assert upload_probe(server, session.session_id, limit + 2**20, declared=False) == 413
        again = session.run()
    assert again.status == "FINISHED_SUCCESSFULLY" and not again.exceptions
    with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=10) as response:
        assert response.status == 200
