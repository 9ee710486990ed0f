"""The two backends behind one SQLAlchemy Core code path: the embedded SQLite file and a database server
(PostgreSQL through psycopg 3).

SQLite: one connection per call (no pool), WAL mode with ``synchronous=NORMAL`` and a busy timeout, writes in
``BEGIN IMMEDIATE``. A server: a small pool, autocommit connections with explicit transactions, every wait
bounded (connect timeout 2 s, statement and lock timeouts 2 s, TCP user timeout 2 s), and inserts that skip a
run already stored (its ``run_uid``), so a retried write never stores a run twice.

Every fault becomes a *problem* (``corrupt``, ``busy``, ``read-only``, ``away``, ``auth``, ``error``) and a note
for :func:`core.runs.store_status`; no message carries a URL's password (:func:`core.runs.target.redact`).
"""
from __future__ import annotations

import logging
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import column, create_engine, event, literal_column, select, table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from core.runs import pending, target
from core.runs.pending import Store
from core.runs.schema import COLUMNS, ENGINE_OF_OLDER_RUN, NUMBER_FORMAT_OF_OLDER_RUN, STORED, UID, migrate

log = logging.getLogger("core.runs")

BUSY_TIMEOUT_S = 2.0  # a page waits at most about WRITE_ATTEMPTS x this on a locked SQLite store
WRITE_ATTEMPTS = 2
SERVER_TIMEOUT_S = 2  # connect, statement, lock and TCP timeouts of a database server (libpq's least connect timeout)
_SQLITE_TABLE = table("runs", *(column(c) for c in COLUMNS))
_SERVER_TABLE = table("runs", *(column(c) for c in (*COLUMNS, UID)))
_AWAY = ("connection refused", "could not connect", "connection failed", "timeout expired", "timed out",
         "server closed the connection", "terminating connection", "connection is closed", "connection is lost",
         "consuming input failed", "the database system is", "could not translate host name", "no route to host",
         "network is unreachable", "ssl syscall", "canceling statement", "lock timeout", "connection reset",
         "broken pipe", "queuepool limit")
_AUTH = ("password authentication failed", "authentication failed", "no password supplied")


class Conn:
    """A SQLAlchemy connection that also takes plain SQL text (``conn.execute("PRAGMA ...")``)."""

    def __init__(self, sa: Any) -> None:
        self.sa = sa
        self.dialect = sa.dialect.name

    def execute(self, statement: Any, params: Any = None) -> Any:
        if isinstance(statement, str):
            return self.sa.exec_driver_sql(statement)
        return self.sa.execute(statement, params)

    def close(self) -> None:
        self.sa.close()

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows in one transaction (a server skips runs it already holds)."""
        if self.dialect == "sqlite":
            statement, rows = _SQLITE_TABLE.insert(), [{c: row[c] for c in STORED} for row in rows]
        else:
            statement = pg_insert(_SERVER_TABLE).on_conflict_do_nothing(index_elements=[UID])
            rows = [{c: row[c] for c in (*STORED, UID)} for row in rows]
        self.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        try:
            self.sa.execute(statement, rows)
            self.execute("COMMIT")
        except BaseException:
            try:
                self.execute("ROLLBACK")
            except Exception:
                pass
            raise


# --- engines ------------------------------------------------------------------------------------


def _sqlite_engine(path: Path, read_only: bool = False) -> Any:
    def connect() -> sqlite3.Connection:
        timeout = BUSY_TIMEOUT_S
        if read_only:
            return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout,
                                   check_same_thread=False, isolation_level=None)
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            # under WAL, NORMAL syncs at checkpoints only: a power cut may lose the last runs, never damage the file
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    return create_engine("sqlite://", creator=connect, poolclass=NullPool, isolation_level="AUTOCOMMIT")


def server_engine(url: str) -> Any:
    """A pooled engine on a database server, every wait bounded by :data:`SERVER_TIMEOUT_S`."""
    engine = create_engine(
        target.sqlalchemy_url(url), pool_size=2, max_overflow=4, pool_timeout=SERVER_TIMEOUT_S, pool_recycle=600,
        isolation_level="AUTOCOMMIT", hide_parameters=True,
        connect_args={"connect_timeout": SERVER_TIMEOUT_S, "application_name": "use-before-you-train",
                      "tcp_user_timeout": SERVER_TIMEOUT_S * 1000, "keepalives": 1, "keepalives_idle": 10,
                      "keepalives_interval": 2, "keepalives_count": 2},
    )

    @event.listens_for(engine, "connect")
    def _timeouts(dbapi_conn, _record) -> None:  # SET, not startup options: hosted poolers refuse those
        ms = SERVER_TIMEOUT_S * 1000
        dbapi_conn.execute(f"SET statement_timeout = {ms}")
        dbapi_conn.execute(f"SET lock_timeout = {ms}")
        if not dbapi_conn.autocommit:
            dbapi_conn.commit()

    return engine


def _engine(store: Store) -> Any:
    if store.engine is None:
        store.engine = server_engine(store.target.url) if store.server else _sqlite_engine(store.path)
    return store.engine


def connect(store: Store) -> Conn:
    """A connection on a store, migrated the first time (the caller holds the store's lock)."""
    if not store.server:
        store.path.parent.mkdir(parents=True, exist_ok=True)
    conn = Conn(_engine(store).connect())
    try:
        if not store.ready:
            if not store.server:
                conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn.sa)
            store.ready = True
    except BaseException:
        conn.close()
        raise
    return conn


# --- writing and reading ------------------------------------------------------------------------


def write(store: Store, rows: list[dict[str, Any]]) -> bool:
    """Insert rows in one transaction, recovering from the bad states; True when they landed."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            conn = connect(store)
            try:
                conn.insert(rows)
            finally:
                conn.close()
            return True
        except Exception as exc:
            if not store.server and not isinstance(exc, (sqlite3.Error, OSError, DBAPIError)):
                raise
            problem = classify(store, exc)
            log.warning("run store %s: %s (%s)", name(store), message(store, exc), problem)
            if problem == "corrupt" and move_aside(store):
                continue
            if attempt + 1 < WRITE_ATTEMPTS and (
                    problem == "busy" or (problem == "away" and getattr(exc, "connection_invalidated", False))):
                time.sleep(0.05 * 2**attempt)  # locked, or a pooled connection the server had closed: once more
                continue
            note(store, problem, exc)
            return False
    return False


def read(store: Store, session_id: str | None, task: str | None) -> list[dict[str, Any]]:
    """The stored runs, oldest first; [] with a note when they cannot be read."""
    try:
        if store.read_only:
            if not store.path.is_file():
                return []
            conn = Conn(_sqlite_engine(store.path, read_only=True).connect())
        else:
            conn = connect(store)
        try:
            if store.read_only:  # a store opened read-only is never migrated: missing columns read as NULL
                found = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
                if not found:
                    return []
            else:
                found = set(COLUMNS)
            missing = {"engine": ENGINE_OF_OLDER_RUN, "number_format": NUMBER_FORMAT_OF_OLDER_RUN}
            runs = _SQLITE_TABLE
            query = select(*(runs.c[c] if c in found else literal_column(missing.get(c, "NULL")).label(c)
                             for c in COLUMNS)).select_from(runs)
            if session_id is not None:
                query = query.where(runs.c.session_id == session_id)
            if task is not None:
                query = query.where(runs.c.task == task)
            rows = [dict(row._mapping) for row in conn.execute(query.order_by(runs.c.id))]
        finally:
            conn.close()
    except Exception as exc:
        if not store.server and not isinstance(exc, (sqlite3.Error, OSError, DBAPIError)):
            raise
        problem = classify(store, exc)
        log.warning("run store %s not read: %s (%s)", name(store), message(store, exc), problem)
        pending.failed(store)  # a server that does not answer is not asked again at once
        if problem == "read-only" and not store.read_only:
            note(store, problem, exc)
        elif problem in ("away", "auth"):
            note(store, problem, exc)
        elif not (problem == "corrupt" and not store.read_only and move_aside(store)):
            store.notes["unread"] = f"could not read the run store ({message(store, exc)}): showing runs held in memory only"
        return []
    store.notes.pop("unread", None)
    pending.succeeded(store)
    return rows


def server_version(store: Store) -> tuple:
    """How many runs a server holds and the largest id: changes with every write, from any replica."""
    conn = connect(store)
    try:
        count, top = conn.execute("SELECT count(*), max(id) FROM runs").fetchone()
    finally:
        conn.close()
    return int(count), int(top or 0)


# --- problems -----------------------------------------------------------------------------------


def name(store: Store) -> str:
    """The store in a line: the SQLite file, or ``PostgreSQL host/db``."""
    return target.label(store.target).removeprefix("runs: ") if store.server else str(store.path)


def message(store: Store, exc: BaseException) -> str:
    """The error's own words in one line, without the URL's password."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    return target.redact(text, store.target.url)[:300]


def classify(store: Store, exc: BaseException) -> str:
    text = message(store, exc).lower()
    if store.server:
        if any(words in text for words in _AUTH) or ('role "' in text and "does not exist" in text):
            return "auth"
        if getattr(exc, "connection_invalidated", False) or any(words in text for words in _AWAY):
            return "away"
        return "error"
    if "not a database" in text or "malformed" in text:
        return "corrupt"
    if "locked" in text or "busy" in text:
        return "busy"
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, OSError) or any(
        words in text for words in ("readonly", "read-only", "unable to open", "disk i/o", "disk is full")
    ):
        return "read-only"
    return "error"


def note(store: Store, problem: str, exc: BaseException) -> None:
    """Say what happened, in the words :func:`core.runs.store_status` joins into one line."""
    where = name(store)
    if problem == "read-only":
        store.read_only = True
        store.notes[problem] = f"read-only disk: runs kept in memory until the server restarts ({store.path.parent})"
    elif problem == "busy":
        store.notes[problem] = "run store busy (locked by another process): runs held in memory, saved with the next run"
    elif problem == "away":
        store.notes[problem] = f"run store {where} not answering: runs held in memory, written when it is back"
    elif problem == "auth":
        store.notes[problem] = (f"run store {where} refused the login (check the user and password in "
                                f"UBT_RUNS_URL or [connections.runs]): runs held in memory")
    else:
        if store.server:
            store.ready = False  # migrate again next time (a database dropped and made again, say)
        store.notes[problem] = f"run store error ({message(store, exc)}): runs held in memory"


def clear(store: Store) -> None:
    """A write went through: the notes about failed writes no longer hold."""
    for problem in ("busy", "error", "away", "auth", *(("unread",) if store.server else ())):
        store.notes.pop(problem, None)


def move_aside(store: Store) -> bool:
    """Rename a damaged SQLite store (and its WAL files) out of the way; True when a fresh one can start."""
    if store.server:
        return False
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = store.path.with_name(f"{store.path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = store.path.with_name(f"{store.path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        for suffix in ("-wal", "-shm", ""):
            side = Path(f"{store.path}{suffix}")
            if side.exists():
                side.rename(f"{aside}{suffix}")
    except OSError as exc:
        log.warning("damaged run store %s could not be moved aside: %s", store.path, exc)
        note(store, "read-only", exc)
        return False
    log.warning("damaged run store moved aside to %s", aside)
    store.ready = False
    store.notes["corrupt"] = f"the run store was damaged: moved it aside to {aside.name} and started a fresh one"
    return True
