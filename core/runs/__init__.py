"""Run store: every inference and training run, with what it cost, in one table: an embedded SQLite file by
default, or a database server (PostgreSQL) that outlives the app's container and is shared by its replicas.

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

Where (read at every call, :mod:`core.runs.target`): ``$UBT_RUNS_URL``, else the ``url`` of
``[connections.runs]`` in the app's secrets (the page layer hands them over with :func:`configure`; core never
imports streamlit), else the SQLite file ``$UBT_RUNS_DB``, else ``<data_dir>/runs.sqlite``. Both go through
SQLAlchemy Core (:mod:`core.runs.sql`); the schema is versioned and upgraded by :data:`MIGRATIONS`
(:mod:`core.runs.schema`) on either. The SQLite file runs in WAL mode (``synchronous=NORMAL``) with a busy
timeout, one connection per call, and one lock per store inside the process. :func:`store_version` changes
whenever the runs do, so pages can cache what they draw. ``python -m core.runs.copy_sqlite`` copies a SQLite
store into PostgreSQL. Nothing here raises into a page:

* damaged file (not a database, malformed): moved aside to ``<name>.corrupt-<timestamp>``,
  and a fresh store starts;
* locked beyond the busy timeout (after retries): the run is held in memory and saved with the
  next run that gets through;
* read-only disk or folder: runs are kept in memory until the server restarts;
* database server unreachable (at start or later) or refusing the login: runs are held in memory and written
  by a background thread once it answers (:mod:`core.runs.pending`); no call waits on it more than about 2 s,
  and a failed server is asked again only after a growing pause. A retried write never stores a run twice.

:func:`store_status` says which of these happened, in one line, never with a password. Pandas is imported only
by :func:`fetch_runs` and :func:`to_csv`, and SQLAlchemy on the first read or write, so importing this module
is cheap.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3  # noqa: F401  (core.runs.sqlite3: the SQLite backend connects through it, tests replace it)
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.runs import pending as _pending
from core.runs import target as _target
from core.runs.pending import Store as _Store
from core.runs.schema import (  # noqa: F401  (the schema's public names, as before the split)
    COLUMNS, DEFAULT_ENGINE, DEFAULT_NUMBER_FORMAT, HOSTED_ENGINE, MIGRATIONS, SCHEMA_VERSION, migrate,
)
from core.runs.target import RUNS_DB_ENV, RUNS_URL_ENV, db_path, runs_url  # noqa: F401

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)

APPROACHES = ("call an API", "use as is", "prompt with examples", "transfer learning", "fine-tune", "from scratch")
HOSTED_SOURCE = "hosted"  # the weights-source of a hosted call: nothing loaded here
UNTRAINED = ("call an API", "use as is", "prompt with examples")  # approaches that train nothing
KINDS = ("inference", "training")
SKLEARN_ENGINE = "scikit-learn"  # what fits the text "from scratch" arm (TF-IDF + logistic regression): no torch
MAX_SETTING_CHARS = 120

_stores: dict[_target.Target, _Store] = {}
_stores_lock = threading.Lock()


def configure(secrets: Mapping | None) -> None:
    """Hand over the app's secrets (``st.secrets``): a ``[connections.runs]`` entry with a ``url`` (or
    Streamlit's separate fields) puts the runs in that database, unless ``$UBT_RUNS_URL`` is set.

    Args:
        secrets: the app's secrets as a mapping, or None when it has none.
    """
    _target.configure(secrets)


def store_label() -> str:
    """Where the runs go, for the sidebar: ``runs: SQLite (this server only)`` or ``runs: PostgreSQL host/db``,
    with the runs held in memory when there are any. Opens no database."""
    store = _store()
    with store.lock:
        held = len(store.pending)
    return _target.label(store.target) + (f" ({held} run(s) held in memory)" if held else "")


def fingerprint(data: bytes | str) -> str:
    """Identify data without storing it.

    Args:
        data: the input (bytes, or text encoded as UTF-8).

    Returns:
        The SHA-256 hex digest.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def record_run(
    *,
    page: str,
    task: str,
    model: str,
    source: str,
    device: str,
    approach: str | None = None,
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
    engine: str | None = None,
    number_format: str | None = None,
) -> None:
    """Store one run; never raises (problems are logged and reported by :func:`store_status`).

    Args:
        page: the page that ran it (e.g. ``text``, ``fine-tune``).
        task: what it did (e.g. ``sentiment``, ``generation``).
        model: catalog key of the model.
        source: where the weights came from (``hub``, ``package`` ...).
        device: device label (``cpu``, ``cuda`` ...).
        approach: one of :data:`APPROACHES`; None: "call an API" for a hosted call (``source`` ``hosted``), else
            "use as is".
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
        engine: what ran the model: a key of ``core.engines.ENGINES``; always :data:`HOSTED_ENGINE` for a hosted
            call, and :data:`DEFAULT_ENGINE` when None.
        number_format: the number format it ran in (``fp32``, ``bf16``, ``int8`` ...; see core/precision.py);
            ``unknown`` for a hosted call, :data:`DEFAULT_NUMBER_FORMAT` when None.
    """
    try:
        hosted = source == HOSTED_SOURCE
        approach = approach or ("call an API" if hosted else "use as is")
        engine = HOSTED_ENGINE if hosted else engine or DEFAULT_ENGINE
        number_format = "unknown" if hosted else number_format or DEFAULT_NUMBER_FORMAT
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
            "number_format": str(number_format),
            "run_uid": uuid.uuid4().hex,  # a server stores each run once, however often its write is retried
        }
        store = _store()
        with store.lock:
            store.pending.append(row)
            if not store.read_only and not _pending.waiting(store):
                _flush(store)
            _pending.keep_flushing(store, _flush)
    except Exception:  # a run that cannot be recorded must not break the page that made it
        log.exception("run not recorded")


def flush() -> bool:
    """Write the runs held in memory now, if the store takes them (a server's pause after a failure is skipped).

    Returns:
        True when nothing is held in memory any more.
    """
    store = _store()
    with store.lock:
        if store.pending and not store.read_only:
            store.retry_at = 0.0
            _flush(store)
        return not store.pending


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
            if _pending.waiting(store):
                if not {"away", "auth"} & store.notes.keys():  # those already say the runs are held in memory
                    store.notes.setdefault("unread", f"could not read the run store ({_sql().name(store)} not "
                                                     "answering): showing runs held in memory only")
            else:
                rows = _sql().read(store, session_id, task)
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
    """A token that changes whenever :func:`fetch_runs` could return something new, so that a page can cache
    what it draws from the runs.

    Returns:
        The store, the writes this process made to it and the runs held in memory; then for SQLite the size
        and modification time (ns) of the file and its WAL, read without opening the database, and for a
        server how many runs it holds and the largest id (one small query; the last ones seen while it is
        away). Both catch other processes' writes.
    """
    store = _store()
    with store.lock:
        if store.server:
            if not _pending.waiting(store):
                try:
                    store.seen = _sql().server_version(store)
                except Exception as exc:
                    _sql().note(store, _sql().classify(store, exc), exc)
                    _pending.failed(store)
            return (_target.label(store.target), store.writes, len(store.pending), *store.seen)
        stamps = []
        for suffix in ("", "-wal"):
            try:
                found = os.stat(f"{store.path}{suffix}")
                stamps += [found.st_size, found.st_mtime_ns]
            except OSError:
                stamps += [None, None]
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
    """One line for people about the store, empty when all is well; never a password.

    Returns:
        e.g. ``"read-only disk: runs kept in memory until the server restarts (3 run(s) in memory)"``.
    """
    try:
        store = _store()
        with store.lock:
            line = " · ".join(store.notes.values())
            if store.pending:
                line += f" ({len(store.pending)} run(s) in memory)"
        return _target.redact(line, store.target.url)
    except Exception:
        log.exception("run store status unknown")
        return "run store status unknown: see the server log"


# --- internals ----------------------------------------------------------------------------------


def _store() -> _Store:
    where = _target.current()
    with _stores_lock:
        return _stores.setdefault(where, _Store(where))


def _sql():
    """The SQLAlchemy backends, imported on first use (SQLAlchemy takes a tenth of a second to import)."""
    from core.runs import sql

    return sql


def _flush(store: _Store) -> bool:
    """Write the held runs in one transaction (the caller holds the lock); True when they landed."""
    if _sql().write(store, store.pending):
        store.writes += 1
        store.pending.clear()
        _sql().clear(store)
        _pending.succeeded(store)
        return True
    _pending.failed(store)
    return False


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
