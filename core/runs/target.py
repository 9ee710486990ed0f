"""Where the runs go: a database URL (``$UBT_RUNS_URL``, else ``[connections.runs]`` in the app's secrets, handed
in by the page layer through :func:`configure`), else the embedded SQLite file.

Nothing here imports SQLAlchemy or streamlit: the sidebar calls :func:`label` on every run. A URL's password
is kept out of every line this package writes: :func:`redact` takes it out of any text.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from core.config import get_settings

RUNS_DB_ENV = "UBT_RUNS_DB"
RUNS_URL_ENV = "UBT_RUNS_URL"
SECRETS_NAME = "runs"  # [connections.runs] in .streamlit/secrets.toml, Streamlit's st.connection convention

_configured: dict[str, str | None] = {"url": None}
_configured_lock = threading.Lock()


@dataclass(frozen=True)
class Target:
    """One store: ``url`` is None for the SQLite file at ``path``."""

    path: Path | None = None
    url: str | None = None

    @property
    def server(self) -> bool:
        return self.url is not None


def db_path() -> Path:
    """The SQLite file: ``$UBT_RUNS_DB`` (read at every call), else ``<data_dir>/runs.sqlite``."""
    configured = os.environ.get(RUNS_DB_ENV)
    return Path(configured).expanduser() if configured else get_settings().data_dir / "runs.sqlite"


def configure(secrets: Mapping | None) -> None:
    """Take the run store's URL from the app's secrets (``[connections.runs]``: ``url``, or Streamlit's
    separate ``dialect``, ``username``, ``password``, ``host``, ``port``, ``database`` fields); None or no
    such entry: none. ``$UBT_RUNS_URL`` still comes first."""
    url = None
    try:
        entry = ((secrets or {}).get("connections") or {}).get(SECRETS_NAME) or {}
        url = entry.get("url") or _from_fields(entry)
    except AttributeError:  # not a mapping of mappings: no entry
        url = None
    with _configured_lock:
        _configured["url"] = str(url).strip() if url else None


def _from_fields(entry: Mapping) -> str | None:
    if not entry.get("dialect") or not entry.get("host"):
        return None
    driver = f"+{entry['driver']}" if entry.get("driver") else ""
    login = quote(str(entry.get("username", "")), safe="")
    if entry.get("password"):
        login += ":" + quote(str(entry["password"]), safe="")
    port = f":{entry['port']}" if entry.get("port") else ""
    return f"{entry['dialect']}{driver}://{login}{'@' if login else ''}{entry['host']}{port}/{entry.get('database', '')}"


def runs_url() -> str | None:
    """The database URL in use: ``$UBT_RUNS_URL``, else the configured secrets entry, else None (SQLite)."""
    url = os.environ.get(RUNS_URL_ENV, "").strip()
    if url:
        return url
    with _configured_lock:
        return _configured["url"]


def current() -> Target:
    """The store to use now (read at every call)."""
    url = runs_url()
    return Target(url=url) if url else Target(path=db_path())


def sqlalchemy_url(url: str) -> str:
    """A hosted database's plain ``postgresql://`` (or ``postgres://``) URL, as their consoles give it, with this
    project's driver (psycopg 3) named."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def password(url: str) -> str | None:
    """The password in a URL, if any (to take it out of messages)."""
    try:
        found = urlsplit(url).password
    except ValueError:
        return None
    return unquote(found) if found else None


def where(url: str) -> str:
    """``host/db`` of a database URL, or its kind when it has no host; never the user or password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        db = parts.path.lstrip("/")
    except ValueError:
        return "(unreadable URL)"
    return f"{host}/{db}" if host else (db or "(no host)")


def kind(url: str) -> str:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    return {"postgresql": "PostgreSQL", "postgres": "PostgreSQL", "sqlite": "SQLite", "mysql": "MySQL"}.get(scheme, scheme)


def label(target: Target) -> str:
    """``runs: SQLite (this server only)`` or ``runs: PostgreSQL host/db``."""
    if not target.server:
        return "runs: SQLite (this server only)"
    return f"runs: {kind(target.url)} {where(target.url)}"


def redact(text: str, url: str | None) -> str:
    """``text`` with the URL's password (raw and URL-encoded) replaced by ``***``."""
    secret = password(url) if url else None
    if not secret:
        return text
    for form in {secret, quote(secret, safe=""), quote(secret)}:
        text = text.replace(form, "***")
    return text
