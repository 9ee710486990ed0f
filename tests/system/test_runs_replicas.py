"""Two replicas of the app on one PostgreSQL: two real app servers (tests/support/serve_tiny.py: app.py under Streamlit,
tiny DistilBERT), each with its own data folder, both with ``UBT_RUNS_URL`` on one database started by the
tests. Classify clicks go through both at once over Streamlit's websocket protocol (tests/support/st_session.py); then
each server's Summary (its CSV download), and a third process's ``fetch_runs``, hold every run from both, none
lost and none twice; and after both servers and PostgreSQL are restarted, the runs are still there."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from core import runs
from tests.support.serve_tiny import tiny_server
from tests.support.st_session import Session

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CLICKS = 4  # Classify clicks per replica
TEXTS = ["I love this movie.", "This was a waste of money.", "Not bad at all.", "Terrible acting, great music."]


def _classify(server, out: dict, name: str) -> None:
    with Session(server.url, "text", timeout_s=300) as session:
        session.run()  # learn the widgets' ids
        for n in range(CLICKS):
            run = session.run({"sentiment_text": TEXTS[n % len(TEXTS)]}, click="sentiment_run")
            assert run.ok and "Label" in run.metrics(), (run.exceptions, run.alerts("ERROR"))
        out[name] = session.session_id


def _summary_csv(server) -> tuple[list[dict], list[str]]:
    """The runs a replica's Summary offers to download (every run on the server), and its sidebar captions."""
    with Session(server.url, "summary", timeout_s=300) as session:
        run = session.run()  # "Runs from" starts at everyone on this server
        assert run.ok, run.exceptions
        buttons = [b for b in run.of_type("download_button") if b.label.startswith("Download these runs")]
        assert buttons, "no CSV download on Summary"
        with urllib.request.urlopen(server.url + buttons[0].url, timeout=30) as answer:
            text = answer.read().decode("utf-8")
        captions = [m.body for m in run.of_type("markdown")]
    return list(csv.DictReader(io.StringIO(text))), captions


def _fetch_in_a_third_process(url: str) -> list[dict]:
    code = ("import json\nfrom core import runs\nframe = runs.fetch_runs()\n"
            "assert runs.store_status() == '', runs.store_status()\n"
            "print(json.dumps(frame[['id', 'session_id', 'page', 'task']].to_dict('records')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, runs.RUNS_URL_ENV: url},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_replicas_on_one_postgres_see_every_run_once(postgres, tmp_path):
    url = postgres.new_database()
    env = {runs.RUNS_URL_ENV: url}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    sessions: dict[str, str] = {}
    with tiny_server(tmp_path / "a", env) as a, tiny_server(tmp_path / "b", env) as b:
        assert a.env["UBT_DATA_DIR"] != b.env["UBT_DATA_DIR"]
        workers = [threading.Thread(target=_classify, args=(server, sessions, name)) for name, server in
                   (("a", a), ("b", b))]
        failures: list[BaseException] = []
        for worker in workers:
            worker.run = (lambda run: lambda: _record_failure(run, failures))(worker.run)
            worker.start()
        for worker in workers:
            worker.join(600)
        assert not failures, failures
        assert set(sessions) == {"a", "b"}

        seen = []
        for server in (a, b):
            rows, captions = _summary_csv(server)
            # one app session per replica (the app's own session ids), each with its clicks, every one once
            assert sorted(Counter(r["session_id"] for r in rows).values()) == [CLICKS, CLICKS], rows
            assert len({r["id"] for r in rows}) == 2 * CLICKS and all(int(r["id"]) > 0 for r in rows)
            assert any(c.startswith("**Device:**") and "runs: PostgreSQL 127.0.0.1/" in c for c in captions), captions
            seen.append(sorted((int(r["id"]), r["session_id"]) for r in rows))
        assert seen[0] == seen[1]  # both Summaries: the same runs
        for server in (a, b):
            assert "Traceback" not in server.log(), server.log()[-4000:]

    third = _fetch_in_a_third_process(url)
    assert sorted((r["id"], r["session_id"]) for r in third) == seen[0]

    postgres.stop()  # both app servers are gone; now the database restarts too
    postgres.start()
    assert _fetch_in_a_third_process(url) == third
    (tmp_path / "c").mkdir()
    with tiny_server(tmp_path / "c", env) as again:  # a new replica, after the restart
        rows, _ = _summary_csv(again)
    assert sorted(int(r["id"]) for r in rows) == sorted(r["id"] for r in third)


def _record_failure(run, failures: list) -> None:
    try:
        run()
    except BaseException as exc:  # an assertion in a worker thread: fail the test, not only the thread
        failures.append(exc)
