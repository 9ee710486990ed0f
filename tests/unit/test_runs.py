"""Run store on its embedded SQLite file: schema and migrations, and the bad states (damaged, locked, read-only).
What both backends share (round trip, many writers, versions) is tested on each in tests/system/test_runs_postgres.py."""
import json
import math
import sqlite3

import pandas as pd
import pytest

from core import runs
from core.runs import sql as runs_sql

RUN = dict(page="text", task="sentiment", model="distilbert-sst2", source="hub", device="cpu")


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A private store file, named through the environment as the app does."""
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(path))
    return path


def test_db_path_is_read_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "a.sqlite"))
    first = runs.db_path()
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "b.sqlite"))
    assert (first.name, runs.db_path().name) == ("a.sqlite", "b.sqlite")


def test_fresh_store_is_versioned_and_in_wal_mode(db):
    runs.record_run(**RUN, wall_s=0.1)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == runs.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_migrate_from_v0_then_nothing_to_do(tmp_path):
    conn = sqlite3.connect(tmp_path / "v0.sqlite", isolation_level=None)
    assert runs.migrate(conn) == 0
    assert runs.migrate(conn) == runs.SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == runs.SCHEMA_VERSION
    conn.close()


def test_older_store_is_migrated_keeping_its_runs(db):
    conn = sqlite3.connect(db, isolation_level=None)
    runs.MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s) "
        "VALUES ('2024-01-01T00:00:00.000+00:00', 'text', 'sentiment', 'old', 'hub', 'cpu', 'use as is', 'inference', 0.3)"
    )
    conn.close()

    runs.record_run(**RUN, wall_s=0.1)

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == runs.SCHEMA_VERSION == 6
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"runs_session", "runs_task"} <= indexes
    conn.close()
    assert runs.fetch_runs()["model"].tolist() == ["old", "distilbert-sst2"]


def test_store_of_version_2_gains_memory_added_and_data_source(db):
    conn = sqlite3.connect(db, isolation_level=None)
    for step in runs.MIGRATIONS[:2]:
        step(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s, peak_mb, data_fingerprint) "
        "VALUES ('2024-01-01T00:00:00.000+00:00', 'fine-tune', 'sentiment', 'old', 'package', 'cpu', 'fine-tune', "
        "'training', 30.0, 2192.0, 'abc123')"
    )
    conn.close()

    runs.record_run(**RUN, wall_s=0.1, peak_mb=2192.0, added_mb=96.5, data_source="upload: reviews.csv")

    old, new = runs.fetch_runs().to_dict("records")
    assert (old["peak_mb"], old["data_fingerprint"]) == (2192.0, "abc123")
    assert math.isnan(old["added_mb"]) and pd.isna(old["data_source"])  # unknown then, never a made-up figure
    assert (new["peak_mb"], new["added_mb"], new["data_source"]) == (2192.0, 96.5, "upload: reviews.csv")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == runs.SCHEMA_VERSION
    conn.close()


def test_store_of_version_3_gains_the_api_cost_and_old_rows_read(db):
    conn = sqlite3.connect(db, isolation_level=None)
    for step in runs.MIGRATIONS[:3]:
        step(conn)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s) "
        "VALUES ('2024-01-01T00:00:00.000+00:00', 'text', 'sentiment', 'old', 'package', 'cpu', 'use as is', "
        "'inference', 0.1)"
    )
    conn.close()

    runs.record_run(**{**RUN, "approach": "call an API", "source": "hosted"}, wall_s=0.8, api_cost_usd=0.0021)

    old, new = runs.fetch_runs().to_dict("records")
    assert math.isnan(old["api_cost_usd"])
    assert (new["approach"], new["api_cost_usd"]) == ("call an API", 0.0021)


OLDER_RUNS = [  # (source, approach, model, params) of runs stored before the engine was, and the engine they ran on
    (("hosted", "call an API", "openai-compatible/m", "{}"), "hosted"),
    (("package", "use as is", "smollm2-135m", '{"engine": "llama.cpp", "max_new_tokens": 8}'), "llama.cpp"),
    (("package", "use as is", "faster-whisper-tiny-en", '{"backend": "faster-whisper"}'), "ctranslate2"),
    (("package", "use as is", "whisper-tiny", '{"backend": "openai-whisper"}'), "torch"),
    (("hub", "fine-tune", "minilm-l6", "not json"), "torch"),  # never written by record_run: migrated all the same
]


def _store_of_version_4(db, readable: bool = False):
    """A version-4 store holding OLDER_RUNS (the last, settings that are not JSON, only when not ``readable``)."""
    conn = sqlite3.connect(db, isolation_level=None)
    for step in runs.MIGRATIONS[:4]:
        step(conn)
    conn.execute("PRAGMA user_version = 4")
    conn.executemany(
        "INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s, params) "
        "VALUES ('2024-01-01T00:00:00.000+00:00', 'text', 'generation', ?, ?, 'cpu', ?, 'inference', 0.1, ?)",
        [(model, source, approach, params) for (source, approach, model, params), _ in OLDER_RUNS[:-1 if readable else None]],
    )
    conn.close()


def test_store_of_version_4_gains_the_engine_derived_for_older_runs(db):
    _store_of_version_4(db)
    runs.record_run(**RUN, wall_s=0.1, engine="onnxruntime")
    runs.record_run(**RUN, wall_s=0.1)

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == runs.SCHEMA_VERSION
    stored = [engine for (engine,) in conn.execute("SELECT engine FROM runs ORDER BY id")]
    conn.close()
    assert stored == [engine for _, engine in OLDER_RUNS] + ["onnxruntime", "torch"]


def test_older_store_on_a_read_only_disk_reads_the_engine_as_derived(db):
    _store_of_version_4(db, readable=True)
    runs._store().read_only = True
    assert runs.fetch_runs()["engine"].tolist() == [engine for _, engine in OLDER_RUNS[:-1]]


def test_writes_sync_at_checkpoints_only_under_wal(db, monkeypatch):
    """synchronous=NORMAL: under WAL a commit no longer waits for the disk (a power cut may lose the last runs,
    never damage the file)."""
    seen, connect = [], runs_sql.connect

    def spy(store):
        conn = connect(store)
        seen.append((conn.execute("PRAGMA journal_mode").fetchone()[0], conn.execute("PRAGMA synchronous").fetchone()[0]))
        return conn

    monkeypatch.setattr(runs_sql, "connect", spy)
    runs.record_run(**RUN, wall_s=0.1)
    runs.fetch_runs()
    assert seen == [("wal", 1)] * 2  # 1 is NORMAL; sqlite's default is FULL (2)


def test_older_store_on_a_read_only_disk_still_reads(db):
    """A read-only store is never migrated: the columns it lacks read as missing, not as an error."""
    conn = sqlite3.connect(db, isolation_level=None)
    for step in runs.MIGRATIONS[:2]:
        step(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s, peak_mb) "
        "VALUES ('2024-01-01T00:00:00.000+00:00', 'text', 'sentiment', 'old', 'hub', 'cpu', 'use as is', 'inference', "
        "0.3, 700.0)"
    )
    conn.close()
    runs._store().read_only = True

    frame = runs.fetch_runs()
    assert frame["model"].tolist() == ["old"] and frame["peak_mb"].tolist() == [700.0]
    assert frame["added_mb"].isna().all() and frame["data_source"].isna().all()
    assert runs.store_status() == ""


def test_memory_added_is_read_from_a_tracked_peak(db):
    from core.measure import PeakMB

    runs.record_run(**RUN, wall_s=0.1, peak_mb=PeakMB(2192.0, 2100.0))
    runs.record_run(**RUN, wall_s=0.1, peak_mb=2192.0)  # a plain number: nothing to read
    runs.record_run(**RUN, wall_s=0.1, peak_mb=PeakMB(2192.0, 2100.0), added_mb=150.0)  # given: kept
    frame = runs.fetch_runs()
    assert frame["peak_mb"].tolist() == [2192.0] * 3
    assert frame["added_mb"].fillna(-1).tolist() == [92.0, -1, 150.0]


def test_data_source_is_a_name_cut_to_a_setting_length(db):
    runs.record_run(**RUN, wall_s=0.1, data_source="upload: " + "x" * 500 + ".csv")
    assert len(runs.fetch_runs().iloc[0]["data_source"]) == runs.MAX_SETTING_CHARS


def test_damaged_file_is_moved_aside_and_a_fresh_store_starts(db):
    db.write_bytes(b"this is not a database, just junk bytes " * 100)
    runs.record_run(**RUN, wall_s=0.1)
    aside = list(db.parent.glob("runs.sqlite.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not a database")
    assert runs.fetch_runs()["wall_s"].tolist() == [0.1]
    assert "moved it aside to runs.sqlite.corrupt-" in runs.store_status()


def test_damaged_file_found_while_reading(db):
    db.write_bytes(b"\x00junk" * 1000)
    assert runs.fetch_runs().empty
    assert len(list(db.parent.glob("runs.sqlite.corrupt-*"))) == 1
    runs.record_run(**RUN, wall_s=0.1)
    assert len(runs.fetch_runs()) == 1


def test_folder_that_cannot_exist_keeps_runs_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(blocker / "runs.sqlite"))
    runs.record_run(**RUN, wall_s=0.1, session_id="s")
    runs.record_run(**RUN, wall_s=0.2, session_id="s")
    frame = runs.fetch_runs(session_id="s")
    assert frame["wall_s"].tolist() == [0.1, 0.2]
    assert (frame["id"] < 0).all()
    assert runs.store_status().startswith("read-only disk: runs kept in memory")
    assert "2 run(s) in memory" in runs.store_status()


def test_read_only_database_keeps_runs_in_memory(db, monkeypatch):
    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(runs.sqlite3, "connect", refuse)
    runs.record_run(**RUN, wall_s=0.1)
    assert runs.fetch_runs()["wall_s"].tolist() == [0.1]
    assert "read-only disk" in runs.store_status()


def test_locked_store_holds_runs_then_saves_them(db, monkeypatch):
    monkeypatch.setattr(runs_sql, "BUSY_TIMEOUT_S", 0.05)
    runs.record_run(**RUN, wall_s=0.1)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    runs.record_run(**RUN, wall_s=0.2)
    assert "busy" in runs.store_status() and "1 run(s) in memory" in runs.store_status()
    blocker.execute("ROLLBACK")
    blocker.close()

    runs.record_run(**RUN, wall_s=0.3)
    frame = runs.fetch_runs()
    assert frame["wall_s"].tolist() == [0.1, 0.2, 0.3]
    assert (frame["id"] > 0).all()
    assert runs.store_status() == ""


def test_long_strings_are_dropped_not_stored(db):
    secret = "my private prompt " * 20
    runs.record_run(**RUN, wall_s=0.1, params={"max_new_tokens": 20, "prompt": secret}, metrics={"text": secret})
    assert secret not in db.read_bytes().decode("latin-1")
    row = runs.fetch_runs().iloc[0]
    assert row["params"]["max_new_tokens"] == 20
    assert row["params"]["prompt"].startswith("<dropped")
    assert row["metrics"]["text"].startswith("<dropped")


def test_fingerprint_is_sha256_of_the_data():
    assert runs.fingerprint("abc") == runs.fingerprint(b"abc")
    assert runs.fingerprint(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_csv_holds_json_settings(db):
    runs.record_run(**RUN, wall_s=0.1, params={"max_length": 64})
    text = runs.to_csv(runs.fetch_runs()).decode()
    header, row = text.splitlines()[:2]
    assert header.split(",") == list(runs.COLUMNS)
    assert json.dumps({"max_length": 64}).replace('"', '""') in row


OLDER_FORMATS = [  # (model, source, approach, device) of runs stored before the number format was, and their format
    (("distilbert-sst2", "hub", "use as is", "cpu · float32 · 2 thread(s)"), "fp32"),
    (("distilbert-sst2@int8", "hub", "use as is", "cpu · int8 · 2 thread(s)"), "int8"),
    (("faster-whisper-tiny-en", "package", "use as is", "cpu · int8 · 2 thread(s)"), "int8"),
    (("smollm2-135m", "package", "use as is", "cpu · CTranslate2 int8 · 1 thread(s)"), "int8"),
    (("smollm2-135m", "package", "use as is", "cpu · llama.cpp Q4_1 · 2 thread(s)"), "q4_1"),
    (("openai-compatible/m", "hosted", "call an API", "hosted: server"), "unknown"),
    (("minilm-l6", "package", "fine-tune", "cpu · float32 · 1 thread(s)"), "fp32"),
]


def test_store_of_version_5_gains_the_number_format_derived_for_older_runs(db):
    conn = sqlite3.connect(db, isolation_level=None)
    for step in runs.MIGRATIONS[:5]:
        step(conn)
    conn.execute("PRAGMA user_version = 5")
    conn.executemany(
        "INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s, engine) "
        "VALUES ('2024-01-01T00:00:00.000+00:00', 'text', 'sentiment', ?, ?, ?, ?, 'inference', 0.1, 'torch')",
        [(model, source, device, approach) for (model, source, approach, device), _ in OLDER_FORMATS],
    )
    conn.close()

    runs.record_run(**RUN, wall_s=0.1, number_format="bf16")
    runs.record_run(**RUN, wall_s=0.1)

    assert runs.fetch_runs()["number_format"].tolist() == [f for _, f in OLDER_FORMATS] + ["bf16", "fp32"]
