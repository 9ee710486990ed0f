"""Run store: every inference and training run, with what it cost, in one SQLite file.

Privacy: a run holds settings and measurements only. ``params`` holds settings such as
``max_new_tokens``, ``steps`` or ``train_examples``, never prompts, texts, images, audio or
uploads; to tell runs on the same data apart, pass ``data_fingerprint=fingerprint(data)`` and
``data_source``, the data's name (``upload: reviews.csv``). As a safety net, string values longer
than ``MAX_SETTING_CHARS`` in ``params`` and ``metrics`` are dropped before anything is stored.

Memory comes in two figures (see :mod:`core.measure`): ``peak_mb`` is the whole process's peak
during the run, ``added_mb`` what the run itself added. Runs stored before ``added_mb`` existed
have none (NaN).

Conventions read by the Summary page: ``metrics["accuracy"]`` and ``metrics["macro_f1"]`` are
fractions in [0, 1]; ``params["train_examples"]`` is the number of labelled examples a training
run used.

The file is ``$UBT_RUNS_DB`` (read at every call), else ``<data_dir>/runs.sqlite``. Its schema
is versioned with ``PRAGMA user_version`` and upgraded by :data:`MIGRATIONS`. It runs in WAL
mode (``synchronous=NORMAL``) with a busy timeout, one connection per call, and one lock per file inside
the process. :func:`store_version` changes whenever the runs do, so pages can cache what they draw.
Nothing here raises into a page:

* damaged file (not a database, malformed): moved aside to ``<name>.corrupt-<timestamp>``,
  and a fresh store starts;
* locked beyond the busy timeout (after retries): the run is held in memory and saved with the
  next run that gets through;
* read-only disk or folder: runs are kept in memory until the server restarts.

:func:`store_status` says which of these happened, in one line. Pandas is imported only by
:func:`fetch_runs` and :func:`to_csv`, so importing this module is cheap.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import get_settings

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)

RUNS_DB_ENV = "UBT_RUNS_DB"
APPROACHES = ("call an API", "use as is", "transfer learning", "fine-tune", "from scratch")
UNTRAINED = ("call an API", "use as is")  # approaches that train nothing
KINDS = ("inference", "training")
COLUMNS = (
    "id", "time_utc", "session_id", "page", "task", "model", "source", "device", "approach",
    "kind", "params", "load_s", "wall_s", "peak_mb", "added_mb", "metrics", "data_fingerprint", "data_source",
    "api_cost_usd", "engine",
)
HOSTED_ENGINE = "hosted"  # the engine of a call to an API; local engines are the keys of core.engines.ENGINES
SKLEARN_ENGINE = "scikit-learn"  # what fits the text "from scratch" arm (TF-IDF + logistic regression): no torch
DEFAULT_ENGINE = "torch"  # core.engines.TORCH, named here so that importing this module stays cheap
MAX_SETTING_CHARS = 120
BUSY_TIMEOUT_S = 2.0  # a page waits at most about WRITE_ATTEMPTS x this on a locked store
WRITE_ATTEMPTS = 2

_STORED = COLUMNS[1:]  # every column but the id, which SQLite assigns
_INSERT = f"INSERT INTO runs ({', '.join(_STORED)}) VALUES ({', '.join(':' + c for c in _STORED)})"


def _create_runs(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            time_utc TEXT NOT NULL,
            session_id TEXT,
            page TEXT NOT NULL,
            task TEXT NOT NULL,
            model TEXT NOT NULL,
            source TEXT NOT NULL,
            device TEXT NOT NULL,
            approach TEXT NOT NULL,
            kind TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            load_s REAL,
            wall_s REAL NOT NULL,
            peak_mb REAL,
            metrics TEXT NOT NULL DEFAULT '{}',
            data_fingerprint TEXT
        )
        """
    )


def _index_session_and_task(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE INDEX runs_session ON runs (session_id)")
    conn.execute("CREATE INDEX runs_task ON runs (task)")


def _add_added_memory_and_data_source(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE runs ADD COLUMN added_mb REAL")
    conn.execute("ALTER TABLE runs ADD COLUMN data_source TEXT")


def _add_api_cost(conn: sqlite3.Connection) -> None:
    """The fifth approach, "call an API": what a hosted call was charged, in US dollars."""
    conn.execute("ALTER TABLE runs ADD COLUMN api_cost_usd REAL")


_SETTINGS = "CASE WHEN json_valid(params) THEN params ELSE '{}' END"
# The engine of a run stored before runs recorded one, from what it did record: a hosted call is hosted, a run
# that named its engine in its settings (the Text page's engine comparison) keeps it, faster-whisper is
# CTranslate2, and everything else ran on PyTorch.
_ENGINE_OF_OLDER_RUN = f"""CASE
    WHEN source = 'hosted' OR approach = 'call an API' THEN '{HOSTED_ENGINE}'
    WHEN json_type({_SETTINGS}, '$.engine') = 'text' THEN json_extract({_SETTINGS}, '$.engine')
    WHEN model LIKE 'faster-whisper%' OR json_extract({_SETTINGS}, '$.backend') = 'faster-whisper' THEN 'ctranslate2'
    ELSE '{DEFAULT_ENGINE}'
END"""


def _add_engine(conn: sqlite3.Connection) -> None:
    """What ran the model (engines issue); older runs get it from what they recorded."""
    conn.execute("ALTER TABLE runs ADD COLUMN engine TEXT")
    conn.execute(f"UPDATE runs SET engine = {_ENGINE_OF_OLDER_RUN}")


# Schema version N is reached by applying MIGRATIONS[:N]; append, never edit or reorder.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _create_runs, _index_session_and_task, _add_added_memory_and_data_source, _add_api_cost, _add_engine,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class _Store:
    """Process-wide state of one store file: its lock, and what could not be written there."""

    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False
    read_only: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    writes: int = 0  # transactions this process committed: part of store_version()


_stores: dict[Path, _Store] = {}
_stores_lock = threading.Lock()


def db_path() -> Path:
    """Where the run store lives: ``$UBT_RUNS_DB``, else ``<data_dir>/runs.sqlite``.

    Returns:
        The path, read from the environment at every call.
    """
    configured = os.environ.get(RUNS_DB_ENV)
    return Path(configured).expanduser() if configured else get_settings().data_dir / "runs.sqlite"


def fingerprint(data: bytes | str) -> str:
    """Identify data without storing it.

    Args:
        data: the input (bytes, or text encoded as UTF-8).

    Returns:
        The SHA-256 hex digest.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def migrate(conn: sqlite3.Connection) -> int:
    """Bring a database to :data:`SCHEMA_VERSION`, in one transaction.

    Args:
        conn: a connection opened with ``isolation_level=None``.

    Returns:
        The schema version found before migrating.

    Raises:
        sqlite3.DatabaseError: when the file is not a database or is damaged.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in MIGRATIONS[found:]:
            step(conn)
        if found < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def record_run(
    *,
    page: str,
    task: str,
    model: str,
    source: str,
    device: str,
    approach: str = "use as is",
    params: dict | None = None,
    load_s: float | None = None,
    wall_s: float = 0.0,
    peak_mb: float | None = None,
    metrics: dict | None = None,
    data_fingerprint: str | None = None,
    session_id: str | None = None,
    kind: str = "inference",
    added_mb: float | None = None,
    data_source: str | None = None,
    api_cost_usd: float | None = None,
    engine: str = DEFAULT_ENGINE,
) -> None:
    """Store one run; never raises (problems are logged and reported by :func:`store_status`).

    Args:
        page: the page that ran it (e.g. ``text``, ``fine-tune``).
        task: what it did (e.g. ``sentiment``, ``generation``).
        model: catalog key of the model.
        source: where the weights came from (``hub``, ``package`` ...).
        device: device label (``cpu``, ``cuda`` ...).
        approach: one of :data:`APPROACHES`.
        params: settings only (``max_new_tokens``, ``train_examples`` ...), never inputs.
        load_s: seconds spent loading the model, None when it was already loaded.
        wall_s: seconds of the run itself (inference latency, or training time).
        peak_mb: peak memory of the whole process during the run, in MB.
        metrics: figures of the result (``accuracy``, ``macro_f1``, ``tokens_per_s`` ...).
        data_fingerprint: :func:`fingerprint` of the input or data set.
        session_id: the Streamlit session that ran it.
        kind: one of :data:`KINDS`.
        added_mb: memory the run added, in MB; when None, read from ``peak_mb`` if that came from
            a :class:`core.measure.PeakTracker` (see :func:`core.measure.added_mb`).
        data_source: the data's name (``upload: reviews.csv``, ``example: digits``), never the data;
            cut to ``MAX_SETTING_CHARS``.
        api_cost_usd: what a hosted call ("call an API") was charged, at the prices the user set.
        engine: what ran the model: a key of ``core.engines.ENGINES``, or :data:`HOSTED_ENGINE`.
    """
    try:
        if approach not in APPROACHES:
            log.warning("run with unknown approach %r (known: %s)", approach, ", ".join(APPROACHES))
        if kind not in KINDS:
            log.warning("run with unknown kind %r (known: %s)", kind, ", ".join(KINDS))
        row = {
            "time_utc": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "session_id": session_id,
            "page": page,
            "task": task,
            "model": model,
            "source": source,
            "device": device,
            "approach": approach,
            "kind": kind,
            "params": _to_json(params),
            "load_s": None if load_s is None else float(load_s),
            "wall_s": float(wall_s),
            "peak_mb": None if peak_mb is None else float(peak_mb),
            "added_mb": _added_mb(added_mb, peak_mb),
            "metrics": _to_json(metrics),
            "data_fingerprint": data_fingerprint,
            "data_source": None if data_source is None else str(data_source)[:MAX_SETTING_CHARS],
            "api_cost_usd": None if api_cost_usd is None else float(api_cost_usd),
            "engine": str(engine),
        }
        store = _store()
        with store.lock:
            if store.read_only:
                store.pending.append(row)
            elif _write(store, [*store.pending, row]):
                store.writes += 1
                store.pending.clear()
                store.notes.pop("busy", None)
                store.notes.pop("error", None)
            else:
                store.pending.append(row)
    except Exception:  # a run that cannot be recorded must not break the page that made it
        log.exception("run not recorded")


def fetch_runs(session_id: str | None = None, task: str | None = None) -> "pandas.DataFrame":
    """Every stored run, oldest first, plus those held in memory (with negative ids).

    Args:
        session_id: only this session's runs, when given.
        task: only runs of this task, when given.

    Returns:
        A DataFrame with :data:`COLUMNS`: ``time_utc`` as UTC datetimes, ``params`` and
        ``metrics`` as dicts, times in seconds and memory in MB (NaN when not measured),
        ``data_fingerprint`` and ``data_source`` missing (NaN) when not given.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    try:
        store = _store()
        with store.lock:
            rows = _read(store, session_id, task)
            held = [
                {"id": -(n + 1), **row}
                for n, row in enumerate(store.pending)
                if (session_id is None or row["session_id"] == session_id) and (task is None or row["task"] == task)
            ]
        rows.extend(held)
    except Exception:
        log.exception("runs not read")
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["time_utc"] = pd.to_datetime(frame["time_utc"], utc=True, format="ISO8601")
    for column in ("load_s", "wall_s", "peak_mb", "added_mb", "api_cost_usd"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    for column in ("params", "metrics"):
        frame[column] = [json.loads(text) if text else {} for text in frame[column]]
    return frame.sort_values("time_utc", kind="stable").reset_index(drop=True)


def store_version() -> tuple:
    """A token that changes whenever :func:`fetch_runs` could return something new, read without opening
    the database, so that a page can cache what it draws from the runs.

    Returns:
        The store's path, the writes this process made to it, the runs held in memory, and the size and
        modification time (ns) of the file and its WAL (which catch other processes' writes).
    """
    store = _store()
    stamps = []
    for suffix in ("", "-wal"):
        try:
            found = os.stat(f"{store.path}{suffix}")
            stamps += [found.st_size, found.st_mtime_ns]
        except OSError:
            stamps += [None, None]
    with store.lock:
        return (str(store.path), store.writes, len(store.pending), *stamps)


def to_csv(runs: "pandas.DataFrame") -> bytes:
    """Runs as CSV for download, ``params`` and ``metrics`` as JSON text.

    Args:
        runs: a frame from :func:`fetch_runs` (extra columns are kept).

    Returns:
        UTF-8 CSV bytes with a header row.
    """
    out = runs.copy()
    for column in ("params", "metrics"):
        out[column] = [json.dumps(value, sort_keys=True) for value in out[column]]
    return out.to_csv(index=False).encode("utf-8")


def store_status() -> str:
    """One line for people about the store, empty when all is well.

    Returns:
        e.g. ``"read-only disk: runs kept in memory until the server restarts (3 run(s) in memory)"``.
    """
    try:
        store = _store()
        with store.lock:
            line = " · ".join(store.notes.values())
            if store.pending:
                line += f" ({len(store.pending)} run(s) in memory)"
        return line
    except Exception:
        log.exception("run store status unknown")
        return "run store status unknown: see the server log"


# --- internals ----------------------------------------------------------------------------------


def _store() -> _Store:
    path = db_path()
    with _stores_lock:
        return _stores.setdefault(path, _Store(path))


def _added_mb(added_mb: float | None, peak_mb: float | None) -> float | None:
    """The memory a run added: as given, else read from a tracked peak; None when neither says."""
    from core.measure import added_mb as tracked

    if added_mb is None and peak_mb is not None:
        added_mb = tracked(peak_mb)
    return None if added_mb is None else float(added_mb)


def _to_json(values: dict | None) -> str:
    kept: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if isinstance(value, (bytes, bytearray)) or (isinstance(value, str) and len(value) > MAX_SETTING_CHARS):
            log.warning("dropped %r from a run: it looks like data, not a setting", key)
            value = f"<dropped: {len(value)} chars>"
        kept[str(key)] = value
    return json.dumps(kept, default=str, sort_keys=True)


def _connect(store: _Store) -> sqlite3.Connection:
    store.path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(store.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        # under WAL, NORMAL syncs at checkpoints only: a power cut may lose the last runs, never damage the file
        conn.execute("PRAGMA synchronous = NORMAL")
        if not store.ready:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)
            store.ready = True
    except BaseException:
        conn.close()
        raise
    return conn


def _problem(exc: BaseException) -> str:
    message = str(exc).lower()
    if "not a database" in message or "malformed" in message:
        return "corrupt"
    if "locked" in message or "busy" in message:
        return "busy"
    if isinstance(exc, OSError) or any(
        words in message for words in ("readonly", "read-only", "unable to open", "disk i/o", "disk is full")
    ):
        return "read-only"
    return "error"


def _write(store: _Store, rows: list[dict[str, Any]]) -> bool:
    """Insert rows in one transaction, recovering from the bad states; True when they landed."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            conn = _connect(store)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            finally:
                conn.close()
            return True
        except (sqlite3.Error, OSError) as exc:
            problem = _problem(exc)
            log.warning("run store %s: %s (%s)", store.path, exc, problem)
            if problem == "corrupt" and _move_aside(store):
                continue
            if problem == "busy" and attempt + 1 < WRITE_ATTEMPTS:
                time.sleep(0.05 * 2**attempt)
                continue
            _note(store, problem, exc)
            return False
    return False


def _read(store: _Store, session_id: str | None, task: str | None) -> list[dict[str, Any]]:
    where = [f"{column} = ?" for column, value in (("session_id", session_id), ("task", task)) if value is not None]
    args = [value for value in (session_id, task) if value is not None]
    try:
        if store.read_only:
            if not store.path.is_file():
                return []
            conn = sqlite3.connect(f"{store.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        else:
            conn = _connect(store)
        try:
            conn.row_factory = sqlite3.Row
            # a store opened read-only is never migrated: columns it lacks read as NULL (the engine as derived)
            found = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
            if not found:
                return []
            missing = {"engine": _ENGINE_OF_OLDER_RUN}
            chosen = ", ".join(column if column in found else f"{missing.get(column, 'NULL')} AS {column}"
                               for column in COLUMNS)
            sql = f"SELECT {chosen} FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
            rows = [dict(row) for row in conn.execute(sql, args)]
        finally:
            conn.close()
    except (sqlite3.Error, OSError) as exc:
        problem = _problem(exc)
        log.warning("run store %s not read: %s (%s)", store.path, exc, problem)
        if problem == "read-only" and not store.read_only:
            _note(store, problem, exc)
        elif not (problem == "corrupt" and not store.read_only and _move_aside(store)):
            store.notes["unread"] = f"could not read the run store ({exc}): showing runs held in memory only"
        return []
    store.notes.pop("unread", None)
    return rows


def _move_aside(store: _Store) -> bool:
    """Rename a damaged store (and its WAL files) out of the way; True when a fresh one can start."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = store.path.with_name(f"{store.path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = store.path.with_name(f"{store.path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        for suffix in ("-wal", "-shm", ""):
            side = Path(f"{store.path}{suffix}")
            if side.exists():
                side.rename(f"{target}{suffix}")
    except OSError as exc:
        log.warning("damaged run store %s could not be moved aside: %s", store.path, exc)
        _note(store, "read-only", exc)
        return False
    log.warning("damaged run store moved aside to %s", target)
    store.ready = False
    store.notes["corrupt"] = f"the run store was damaged: moved it aside to {target.name} and started a fresh one"
    return True


def _note(store: _Store, problem: str, exc: BaseException) -> None:
    if problem == "read-only":
        store.read_only = True
        store.notes[problem] = f"read-only disk: runs kept in memory until the server restarts ({store.path.parent})"
    elif problem == "busy":
        store.notes[problem] = "run store busy (locked by another process): runs held in memory, saved with the next run"
    else:
        store.notes[problem] = f"run store error ({exc}): runs held in memory"
