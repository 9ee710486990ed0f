"""The run store on both backends (the embedded SQLite file and a real PostgreSQL on 127.0.0.1, started by the
tests), and PostgreSQL's faults: stopped mid-session, unreachable at start, hung, a wrong password, a crash and
restart; the copy of a SQLite store into it, twice."""
from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from core import runs
from core.runs import copy_sqlite, target

ROOT = Path(__file__).resolve().parents[2]
RUN = dict(page="text", task="sentiment", model="distilbert-sst2", source="hub", device="cpu")
PLANTED = "Planted-pw-4f9c1e"  # a password that must appear nowhere


def _forget_stores() -> None:
    """Drop this process's store state, closing pooled server connections (each test has its own database)."""
    with runs._stores_lock:
        for store in runs._stores.values():
            if store.engine is not None:
                store.engine.dispose()
        runs._stores.clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path, monkeypatch):
    """A private, empty store on each backend, named through the environment as the app does."""
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "runs.sqlite"))
    monkeypatch.delenv(runs.RUNS_URL_ENV, raising=False)
    if request.param == "postgresql":
        monkeypatch.setenv(runs.RUNS_URL_ENV, request.getfixturevalue("postgres").new_database())
    yield request.param
    _forget_stores()


@pytest.fixture
def pg(postgres, monkeypatch):
    """A fresh PostgreSQL database as the store; the server started again after the test if it stopped it."""
    url = postgres.new_database()
    monkeypatch.setenv(runs.RUNS_URL_ENV, url)
    yield postgres, url
    _forget_stores()
    if not postgres.running():
        postgres.start()


def _query(url: str, sql: str) -> list[tuple]:
    """A query on the store's database from outside the app's code (another client)."""
    parts = target.urlsplit(url)
    with psycopg.connect(host=parts.hostname, port=parts.port, user=parts.username, password=parts.password,
                         dbname=parts.path.lstrip("/"), autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()


def _in_another_process(code: str, env_url: str | None = None) -> str:
    env = {**__import__("os").environ}
    if env_url:
        env[runs.RUNS_URL_ENV] = env_url
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- the same store on both backends ----------------------------------------------------------------


def test_label_names_the_store(backend):
    label = runs.store_label()
    if backend == "sqlite":
        assert label == "runs: SQLite (this server only)"
    else:
        assert label.startswith("runs: PostgreSQL 127.0.0.1/t") and PLANTED not in label
        assert "ubt" not in label  # the user stays out of it too


def test_record_and_fetch_round_trip(backend):
    runs.record_run(**RUN, params={"max_length": 64}, load_s=1.5, wall_s=0.05, peak_mb=512.0, added_mb=40.0,
                    metrics={"texts_per_s": 20.0}, data_fingerprint=runs.fingerprint("hi"), session_id="s1",
                    data_source="example: sentiment", engine="onnxruntime")
    runs.record_run(**{**RUN, "task": "generation"}, wall_s=0.2, session_id="s2", api_cost_usd=0.0021)
    frame = runs.fetch_runs()
    assert tuple(frame.columns) == runs.COLUMNS and len(frame) == 2
    first, second = frame.to_dict("records")
    assert (first["params"], first["metrics"]) == ({"max_length": 64}, {"texts_per_s": 20.0})
    assert (first["load_s"], first["wall_s"], first["peak_mb"], first["added_mb"]) == (1.5, 0.05, 512.0, 40.0)
    assert (first["data_source"], first["engine"], second["api_cost_usd"]) == ("example: sentiment", "onnxruntime", 0.0021)
    assert (first["approach"], first["kind"], first["data_fingerprint"][:8]) == ("use as is", "inference", "8f434346")
    assert str(frame["time_utc"].dt.tz) == "UTC" and frame["load_s"].isna().tolist() == [False, True]
    assert (frame["id"] > 0).all() and frame["id"].is_unique
    assert runs.fetch_runs(session_id="s1")["task"].tolist() == ["sentiment"]
    assert runs.fetch_runs(task="generation")["session_id"].tolist() == ["s2"]
    assert runs.fetch_runs(session_id="s1", task="generation").empty
    assert runs.store_status() == ""


def test_empty_store_has_the_columns(backend):
    frame = runs.fetch_runs()
    assert frame.empty and tuple(frame.columns) == runs.COLUMNS


def test_long_strings_are_dropped_and_names_cut(backend):
    secret = "my private prompt " * 20
    runs.record_run(**RUN, wall_s=0.1, params={"max_new_tokens": 20, "prompt": secret}, metrics={"text": secret},
                    data_source="upload: " + "x" * 500 + ".csv")
    row = runs.fetch_runs().iloc[0]
    assert row["params"]["max_new_tokens"] == 20 and row["params"]["prompt"].startswith("<dropped")
    assert row["metrics"]["text"].startswith("<dropped") and len(row["data_source"]) == runs.MAX_SETTING_CHARS
    assert secret not in runs.to_csv(runs.fetch_runs()).decode()


def test_csv_holds_the_columns(backend):
    runs.record_run(**RUN, wall_s=0.1, params={"max_length": 64})
    header = runs.to_csv(runs.fetch_runs()).decode().splitlines()[0]
    assert header.split(",") == list(runs.COLUMNS)


def test_record_run_never_raises(backend):
    runs.record_run(**RUN, wall_s="not a number")  # type: ignore[arg-type]
    assert runs.fetch_runs().empty


def test_store_version_changes_with_every_write_here_or_elsewhere(backend):
    runs.record_run(**RUN, wall_s=0.1)
    first = runs.store_version()
    assert runs.store_version() == first
    runs.record_run(**RUN, wall_s=0.2)
    second = runs.store_version()
    assert second != first
    _in_another_process("from core import runs\nruns.record_run(page='text', task='x', model='m', source='hub', "
                        "device='cpu', wall_s=1)\nassert runs.store_status() == ''\n")
    assert runs.store_version() != second
    assert len(runs.fetch_runs()) == 3


def test_eight_threads_writing_at_once_all_land(backend):
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(25):
            runs.record_run(**RUN, wall_s=i / 100, session_id=f"thread-{n}", params={"i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    frame = runs.fetch_runs()
    assert len(frame) == 200 and frame["id"].is_unique and (frame["id"] > 0).all()
    assert frame.groupby("session_id").size().tolist() == [25] * 8
    assert runs.store_status() == ""


def test_processes_writing_at_once_all_land(backend):
    """Four processes on a store none of them has opened yet: they create (migrate) it together, then write."""
    script = (
        "from core import runs\n"
        "for i in range(25):\n"
        "    runs.record_run(page='text', task='sentiment', model='m', source='hub', device='cpu', wall_s=0.1)\n"
        "assert runs.store_status() == '', runs.store_status()\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT) for _ in range(4)]
    assert [worker.wait(timeout=120) for worker in workers] == [0] * 4
    frame = runs.fetch_runs()
    assert len(frame) == 100 and frame["id"].is_unique


# --- PostgreSQL: schema ------------------------------------------------------------------------------


def test_a_fresh_postgres_store_is_versioned_and_names_every_run(pg):
    _, url = pg
    runs.record_run(**RUN, wall_s=0.05)
    assert _query(url, "SELECT version FROM runs_schema") == [(runs.SCHEMA_VERSION,)]
    (uid, wall), = _query(url, "SELECT run_uid, wall_s FROM runs")
    assert len(uid) == 32 and wall == 0.05  # double precision: the figure as measured


def test_a_postgres_store_of_version_5_gains_the_number_format_derived_for_its_runs(pg):
    """Schema 6 on PostgreSQL: a store written before the number format was recorded keeps its runs, each given
    the format its device label or model names (the same SQL as on SQLite)."""
    from sqlalchemy import create_engine

    from core.runs import schema

    _, url = pg
    older = [("distilbert-sst2", "cpu · float32 · 2 thread(s)", "use as is", "hub", "fp32"),
             ("distilbert-sst2@int8", "cpu · int8 · 2 thread(s)", "use as is", "hub", "int8"),
             ("smollm2-135m", "cpu · llama.cpp Q4_1 · 2 thread(s)", "use as is", "package", "q4_1"),
             ("openai-compatible/m", "hosted: server", "call an API", "hosted", "unknown")]
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for step in schema.MIGRATIONS[:5]:
            step(conn)
        schema.run(conn, "CREATE TABLE IF NOT EXISTS runs_schema (version INTEGER NOT NULL)")
        schema.run(conn, "INSERT INTO runs_schema (version) VALUES (5)")
        for n, (model, device, approach, source, _) in enumerate(older):
            conn.exec_driver_sql(
                "INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s, engine, run_uid) "
                "VALUES ('2024-01-01T00:00:00.000+00:00', 'text', 'sentiment', %s, %s, %s, %s, 'inference', 0.1, "
                "'torch', %s)", (model, source, device, approach, f"older-{n}"))
    engine.dispose()

    runs.record_run(**RUN, wall_s=0.05, number_format="bf16")

    assert _query(url, "SELECT version FROM runs_schema") == [(runs.SCHEMA_VERSION,)]
    assert runs.fetch_runs()["number_format"].tolist() == [f for *_, f in older] + ["bf16"]


# --- PostgreSQL: faults ------------------------------------------------------------------------------


def _wait_until(check, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_server_stopped_mid_session_holds_runs_then_writes_them_once(pg):
    server, url = pg
    runs.record_run(**RUN, wall_s=0.1, session_id="s")
    runs.record_run(**RUN, wall_s=0.2, session_id="s")
    server.stop()
    for wall in (0.3, 0.4, 0.5):
        started = time.monotonic()
        runs.record_run(**RUN, wall_s=wall, session_id="s")
        assert time.monotonic() - started < 2.5
    status = runs.store_status()
    assert "not answering: runs held in memory, written when it is back" in status and "3 run(s) in memory" in status
    assert "\n" not in status and "127.0.0.1/" in status
    assert runs.store_label().endswith("(3 run(s) held in memory)")
    started = time.monotonic()
    held = runs.fetch_runs(session_id="s")
    assert time.monotonic() - started < 2.5
    assert held["wall_s"].tolist() == [0.3, 0.4, 0.5] and (held["id"] < 0).all()

    server.start()
    assert _wait_until(lambda: runs.store_status() == ""), runs.store_status()  # the background writer, unasked
    assert _query(url, "SELECT count(*), count(DISTINCT run_uid) FROM runs") == [(5, 5)]
    frame = runs.fetch_runs()
    assert frame["wall_s"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5] and (frame["id"] > 0).all()
    runs.record_run(**RUN, wall_s=0.6)
    assert _query(url, "SELECT count(*) FROM runs") == [(6,)] and runs.store_status() == ""


def test_server_unreachable_at_start_holds_runs_until_it_answers(pg):
    server, url = pg
    server.stop()  # before this process ever connected
    started = time.monotonic()
    runs.record_run(**RUN, wall_s=0.1)
    runs.record_run(**RUN, wall_s=0.2)
    assert runs.fetch_runs()["wall_s"].tolist() == [0.1, 0.2]
    assert runs.store_version()  # a page's cache key, read without waiting
    assert time.monotonic() - started < 3.0
    assert "2 run(s) in memory" in runs.store_status()
    server.start()
    assert runs.flush() and runs.store_status() == ""
    assert _query(url, "SELECT count(*) FROM runs") == [(2,)]


def test_a_server_that_hangs_costs_a_page_at_most_about_two_seconds(monkeypatch):
    """A port that takes the connection and never answers (a hung server, or a firewall that swallows packets)."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # the kernel completes the handshake; nobody ever reads or answers
    try:
        monkeypatch.setenv(runs.RUNS_URL_ENV, f"postgresql+psycopg://u:{PLANTED}@127.0.0.1:{hung.getsockname()[1]}/runs")
        waits = []
        for wall in (0.1, 0.2, 0.3):
            started = time.monotonic()
            runs.record_run(**RUN, wall_s=wall)
            waits.append(time.monotonic() - started)
        started = time.monotonic()
        frame = runs.fetch_runs()
        waits.append(time.monotonic() - started)
        assert max(waits) < 3.0, waits
        assert sum(waits) < 4.0, waits  # after a failure it is not asked again at once
        assert frame["wall_s"].tolist() == [0.1, 0.2, 0.3]
        assert "not answering" in runs.store_status() and PLANTED not in runs.store_status()
    finally:
        _forget_stores()
        hung.close()


def test_a_wrong_password_is_one_line_naming_the_connection_and_never_the_password(postgres, monkeypatch, caplog,
                                                                                   tmp_path, capfd):
    caplog.set_level(logging.DEBUG)
    database = postgres.new_database().rsplit("/", 1)[1]
    wrong = postgres.url(database, password=PLANTED)
    monkeypatch.setenv(runs.RUNS_URL_ENV, wrong)
    try:
        runs.record_run(**RUN, wall_s=0.1)
        frame = runs.fetch_runs()
        version, label, status = runs.store_version(), runs.store_label(), runs.store_status()
    finally:
        _forget_stores()
    assert frame["wall_s"].tolist() == [0.1]
    assert status.startswith(f"run store PostgreSQL 127.0.0.1/{database} refused the login") and "\n" not in status
    assert "1 run(s) in memory" in status
    store_file = tmp_path / "runs.sqlite"
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(store_file))
    monkeypatch.delenv(runs.RUNS_URL_ENV)
    runs.record_run(**RUN, wall_s=0.1)
    with pytest.raises(RuntimeError) as raised:
        copy_sqlite.copy(store_file, wrong)
    assert copy_sqlite.main([str(store_file), wrong]) == 1
    seen = " ".join([caplog.text, status, label, repr(version), str(raised.value), *capfd.readouterr()])
    assert "password authentication failed" in seen  # the server's own words are there ...
    assert PLANTED not in seen  # ... and the password is not


def test_a_password_in_an_unreadable_url_stays_out_of_the_messages(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(runs.RUNS_URL_ENV, f"postgresql+psycopg://u:{PLANTED}@127.0.0.1:notaport/db")
    try:
        runs.record_run(**RUN, wall_s=0.1)
        status = runs.store_status()
    finally:
        _forget_stores()
    assert status and PLANTED not in status and PLANTED not in caplog.text
    assert runs.fetch_runs().empty  # SQLite again once the URL is gone: nothing of the other store in it


def test_a_crash_and_restart_keeps_every_acknowledged_run(pg):
    server, url = pg
    for wall in range(1, 21):
        runs.record_run(**RUN, wall_s=wall / 10)
        assert runs.store_status() == ""  # acknowledged: in the database, not held in memory
    server.stop("immediate")  # as a crash: no shutdown checkpoint
    server.start()
    out = _in_another_process("from core import runs\nprint(len(runs.fetch_runs()), repr(runs.store_status()))\n", url)
    assert out.split() == ["20", "''"]
    runs.record_run(**RUN, wall_s=9.9)  # this process's pooled connections died with the server: one retry
    assert runs.store_status() == "" and _query(url, "SELECT count(*) FROM runs") == [(21,)]


# --- moving a SQLite store into PostgreSQL --------------------------------------------------------------


def test_copy_of_a_sqlite_store_is_idempotent(pg, tmp_path, monkeypatch):
    _, url = pg
    old = tmp_path / "old.sqlite"
    conn = sqlite3.connect(old, isolation_level=None)  # a version-4 file, from before runs recorded their engine
    for step in runs.MIGRATIONS[:4]:
        step(conn)
    conn.execute("PRAGMA user_version = 4")
    conn.executemany(
        "INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s, params) "
        "VALUES (?, 'text', 'generation', ?, ?, 'cpu', ?, 'inference', 0.1, ?)",
        [("2024-01-01T00:00:00.000+00:00", "openai-compatible/m", "hosted", "call an API", "{}"),
         ("2024-01-01T00:00:00.000+00:00", "openai-compatible/m", "hosted", "call an API", "{}"),  # the same twice
         ("2024-01-02T00:00:00.000+00:00", "smollm2-135m", "package", "use as is", '{"engine": "llama.cpp"}')],
    )
    conn.close()
    runs.record_run(**RUN, wall_s=0.5)  # already in the server: kept

    command = [sys.executable, "-m", "core.runs.copy_sqlite", str(old)]
    env = {**__import__("os").environ, runs.RUNS_URL_ENV: url}
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "3 run(s); 3 copied to 127.0.0.1/" in first.stdout and "0 copied" in second.stdout
    assert "already there" in second.stdout and postgres_password(url) not in first.stdout + second.stdout

    frame = runs.fetch_runs()
    assert len(frame) == 4 and frame["id"].is_unique
    assert frame["engine"].tolist() == ["hosted", "hosted", "llama.cpp", "torch"]
    check = sqlite3.connect(old)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 4  # the file is read, never changed
    check.close()


def postgres_password(url: str) -> str:
    return target.password(url) or "\0"
