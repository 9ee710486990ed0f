"""Copy a SQLite run store into a database server (PostgreSQL), idempotently.

Usage::

    python -m core.runs.copy_sqlite data/runs.sqlite 'postgresql+psycopg://user:pass@host:5432/db'
    UBT_RUNS_URL='postgresql://...' python -m core.runs.copy_sqlite data/runs.sqlite   # keeps the password out of ps

The file is read as it is (opened read-only, never migrated: columns an older file lacks read as missing, the
engine as derived). Each run gets a name from its file row (its id and every column, hashed), so copying the
same file again, or a copy of it, inserts nothing twice; runs already in the server stay as they are. The
server's table is created or upgraded first. Prints one line; the password never appears in it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from core.runs import sql
from core.runs.pending import Store
from core.runs.schema import COLUMNS
from core.runs.target import RUNS_URL_ENV, Target, redact, where

BATCH = 500


def copy_uid(row: dict) -> str:
    """The name a copied run gets: the same for the same file row, whichever copy of the file it comes from."""
    canonical = json.dumps([row.get(c) for c in COLUMNS], default=str, separators=(",", ":"))
    return "sqlite-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def copy(sqlite_path: Path, url: str) -> tuple[int, int]:
    """Copy every run of a SQLite store into the database at ``url``.

    Args:
        sqlite_path: the SQLite run store.
        url: a SQLAlchemy URL (``postgresql+psycopg://...``; plain ``postgresql://`` works too).

    Returns:
        (runs in the file, runs the server did not hold yet and now does).

    Raises:
        FileNotFoundError: when there is no such file.
        RuntimeError: when a store cannot be read or written (the message has no password).
    """
    if not sqlite_path.is_file():
        raise FileNotFoundError(f"no SQLite run store at {sqlite_path}")
    source = Store(Target(path=sqlite_path), read_only=True)
    rows = sql.read(source, None, None)
    if source.notes:
        raise RuntimeError(" · ".join(source.notes.values()))
    destination = Store(Target(url=url))
    try:
        before = _count(destination)
        for start in range(0, len(rows), BATCH):
            batch = [{**row, "run_uid": copy_uid(row)} for row in rows[start:start + BATCH]]
            conn = sql.connect(destination)
            try:
                conn.insert(batch)
            finally:
                conn.close()
        return len(rows), _count(destination) - before
    except Exception as exc:
        raise RuntimeError(f"{sql.name(destination)}: {sql.message(destination, exc)}") from None
    finally:
        if destination.engine is not None:
            destination.engine.dispose()


def _count(store: Store) -> int:
    conn = sql.connect(store)
    try:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sqlite_path", type=Path, help="the SQLite run store (e.g. data/runs.sqlite)")
    parser.add_argument("url", nargs="?", help=f"the database URL (default: ${RUNS_URL_ENV})")
    args = parser.parse_args(argv)
    url = args.url or os.environ.get(RUNS_URL_ENV, "").strip()
    if not url:
        parser.error(f"give the database URL, or set {RUNS_URL_ENV}")
    try:
        found, added = copy(args.sqlite_path, url)
    except (OSError, RuntimeError) as exc:
        print(f"not copied: {redact(str(exc), url)}", file=sys.stderr)
        return 1
    print(f"{args.sqlite_path}: {found} run(s); {added} copied to {where(url)}, {found - added} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
