"""A real PostgreSQL for the tests: Debian's ``postgresql`` package, ``initdb`` + ``pg_ctl`` in a temporary folder,
listening on 127.0.0.1 only (and a Unix socket in that folder), stopped and removed afterwards.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user (``runuser``), in a folder
it owns. Logins from 127.0.0.1 need the password (scram-sha-256), so a wrong one is refused as on a hosted server.

Where it cannot start (no ``initdb``, no ``postgres`` user, no ``runuser``), :func:`start` raises
:class:`Unavailable` with the reason, which the ``postgres`` fixture (tests/conftest.py) turns into a skip.
"""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
USER = "ubt"


class Unavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if versions:
        return Path(versions[-1]).parent
    raise Unavailable("PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql/*/bin): "
                      "`make test` installs Debian's postgresql package")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server.

    Attributes:
        folder: its temporary folder (data, socket, log).
        port: its port on 127.0.0.1.
        password: the password of :data:`USER`, the superuser.
    """

    folder: Path
    port: int
    password: str
    bin_dir: Path
    as_postgres: bool
    _databases: int = field(default=0)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        """A SQLAlchemy URL for ``database`` (psycopg 3), with the right password unless another is given."""
        return f"postgresql+psycopg://{USER}:{self.password if password is None else password}@{LOOPBACK}:{self.port}/{database}"

    def _command(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise Unavailable(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                              f"\n{self.log.read_text(errors='replace')[-2000:] if self.log.exists() else ''}")
        return done

    def start(self) -> None:
        """Start (or start again) the server on the same port and data, waiting until it accepts connections."""
        options = f"-c listen_addresses={LOOPBACK} -p {self.port} -c unix_socket_directories={self.folder}"
        self._command("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: ends the sessions, writes everything; ``immediate``: as a crash)."""
        self._command("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True).returncode == 0

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        with psycopg.connect(host=LOOPBACK, port=self.port, user=USER, password=self.password, dbname="postgres",
                             autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start() -> PostgresServer:
    """Create a cluster in a new temporary folder and start it on a free loopback port.

    Raises:
        Unavailable: when it cannot start here (the reason in the message).
    """
    bin_dir = _bin_dir()
    as_postgres = os.geteuid() == 0
    if as_postgres and not shutil.which("runuser"):
        raise Unavailable("running as root and no runuser to start PostgreSQL as the postgres user")
    folder = Path(tempfile.mkdtemp(prefix="ubt-pg-"))
    server = PostgresServer(folder, _free_port(), secrets.token_urlsafe(16), bin_dir, as_postgres)
    try:
        pwfile = folder / "pw"
        pwfile.write_text(server.password + "\n")
        if as_postgres:
            try:
                shutil.chown(folder, "postgres", "postgres")
                shutil.chown(pwfile, "postgres", "postgres")
            except (LookupError, OSError) as exc:
                raise Unavailable(f"running as root and the postgres user cannot own a folder: {exc}") from exc
        server._command("initdb", "-D", str(server.data), "-U", USER, f"--pwfile={pwfile}", "-E", "UTF8",
                        "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", timeout_s=120)
        pwfile.unlink()
        server.start()
        deadline = time.monotonic() + 30
        while True:  # pg_ctl -w waits for the socket; make sure TCP answers too
            try:
                with socket.create_connection((LOOPBACK, server.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise Unavailable(f"PostgreSQL started but does not answer on {LOOPBACK}:{server.port}")
                time.sleep(0.1)
    except BaseException:
        server.close()
        raise
    return server
