"""What a store holds in memory while its database is away, and when to try the database again.

A database server that does not answer is not asked again at every call: after a failure the store waits
:data:`RETRY_S` (growing) before the next attempt, so that no page waits on it more than once per interval
(each attempt is bounded by the connect and statement timeouts, about 2 s). Meanwhile runs are held in memory,
and a background thread writes them as soon as the database answers again, even when nobody records another run.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.runs.target import Target

log = logging.getLogger("core.runs")

RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # seconds before the next attempt after 1, 2, 3 ... failures in a row


@dataclass
class Store:
    """Process-wide state of one store: its lock, its engine, and what could not be written there."""

    target: Target
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False  # migrated by this process
    read_only: bool = False  # SQLite only: the disk or folder refuses writes
    pending: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    writes: int = 0  # transactions this process committed: part of store_version()
    engine: Any = None  # the SQLAlchemy engine, made on first use
    failures: int = 0  # server stores: failed attempts in a row
    retry_at: float = 0.0  # server stores: time.monotonic() before which the database is not asked again
    flusher: threading.Thread | None = None
    seen: tuple = ()  # server stores: the last (count, max id) read, for store_version() while it is away

    @property
    def path(self) -> Path:
        """The SQLite file (None for a database server)."""
        return self.target.path  # type: ignore[return-value]

    @property
    def server(self) -> bool:
        return self.target.server


def waiting(store: Store) -> bool:
    """True while a database server that failed is not to be asked again yet."""
    return store.server and time.monotonic() < store.retry_at


def failed(store: Store) -> None:
    """Count a failed attempt on a server and set when to try again (the caller holds the lock)."""
    if store.server:
        store.failures += 1
        store.retry_at = time.monotonic() + RETRY_S[min(store.failures, len(RETRY_S)) - 1]


def succeeded(store: Store) -> None:
    store.failures, store.retry_at = 0, 0.0


def keep_flushing(store: Store, flush: Callable[[Store], bool]) -> None:
    """Start the thread that writes ``store.pending`` once the server answers (the caller holds the lock).

    Args:
        store: a server store with runs held in memory.
        flush: writes the held runs, under the lock; True when they landed.
    """
    if not store.server or not store.pending or (store.flusher is not None and store.flusher.is_alive()):
        return
    store.flusher = threading.Thread(target=_flush_loop, args=(store, flush), name="ubt-runs-flush", daemon=True)
    store.flusher.start()


def _flush_loop(store: Store, flush: Callable[[Store], bool]) -> None:
    while True:
        time.sleep(max(store.retry_at - time.monotonic(), 0.1))
        with store.lock:
            if not store.pending:
                store.flusher = None
                return
            if waiting(store):
                continue
            try:
                flush(store)
            except Exception:  # never let the thread die with runs still held
                log.exception("held runs not written yet")
                failed(store)
