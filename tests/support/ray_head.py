"""A real Ray cluster for the tests: ``ray start --head --num-cpus 2 --include-dashboard=false`` on 127.0.0.1, on
free ports, with its session files in a temporary folder, stopped and removed afterwards.

Ray puts a node on the machine's routable address even when asked for 127.0.0.1, unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (single-machine mode) is set: :func:`loopback_only` sets it for the head and
for this process (the driver must agree with the head on the node's address), and then the head listens on
127.0.0.1 only.

The head runs with ``--block`` as a child of the test process, in a process group of its own: stopping it ends
that process (which stops the head's processes it started), then, if anything is left, that process group by
its id. (``ray stop`` ends every Ray process of the user on the machine, a cluster started by anyone else too.)

Where Ray is not installed or the head does not start, :func:`start` raises :class:`Unavailable` with the reason,
which the fixture turns into a skip.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_S = 120.0  # an upper bound for the head to answer on a busy machine, not a speed assertion


class Unavailable(RuntimeError):
    """Ray cannot be started here; the message says why."""


LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def loopback_only() -> None:
    """Keep this process's Ray on 127.0.0.1 (read when ray is imported; patched too when it already is)."""
    os.environ.update(LOOPBACK_ONLY)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class RayHead:
    """A running head.

    Attributes:
        address: its GCS address, ``127.0.0.1:<port>`` (what ``UBT_RAY_ADDRESS`` takes).
        client_address: its Ray Client address, ``ray://127.0.0.1:<port>``.
        folder: its temporary folder (Ray's session files and logs).
        process: the blocking ``ray start`` process.
    """

    address: str
    client_address: str
    folder: Path
    process: subprocess.Popen

    def client_server_logs(self, chars: int = 2000) -> str:
        """The end of each Ray Client server log of this head (its proxy's and each client's), for a failure message."""
        logs = sorted(self.folder.glob("session_latest/logs/ray_client_server*.err"))
        return "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-chars:]}" for log in logs) or "no logs"

    def close(self) -> None:
        """Stop the head and everything it started, then remove its folder."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group of the ray start process: its session only
        except ProcessLookupError:
            pass
        self.process.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)


def start(num_cpus: int = 2) -> RayHead:
    """Start a head on 127.0.0.1 with ``num_cpus`` CPUs and wait until its GCS and its Ray Client server answer.

    Raises:
        Unavailable: Ray is not installed, or the head did not start (with the end of its output).
    """
    loopback_only()
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    try:
        import ray  # noqa: F401
    except ImportError:
        raise Unavailable("Ray is not installed (pip install -r requirements-ray.txt; `make test` does)") from None
    if ray_bin is None:
        raise Unavailable("the `ray` command is not on PATH")
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's Unix sockets live under it
    port = free_port()
    ports = {flag: free_port() for flag in ("--node-manager-port", "--object-manager-port", "--ray-client-server-port",
                                            "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                            "--metrics-export-port", "--runtime-env-agent-port")}
    command = [ray_bin, "start", "--head", "--block", "--num-cpus", str(num_cpus), "--num-gpus", "0",
               "--include-dashboard=false", "--disable-usage-stats", "--node-ip-address", LOOPBACK,
               "--port", str(port), "--temp-dir", str(folder), "--object-store-memory", str(200 * 2**20),
               *[part for flag, value in ports.items() for part in (flag, str(value))]]
    env = os.environ | LOOPBACK_ONLY | {"RAY_USAGE_STATS_ENABLED": "0"}
    log = open(folder / "start.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    head = RayHead(f"{LOOPBACK}:{port}", f"ray://{LOOPBACK}:{ports['--ray-client-server-port']}", folder, process)
    deadline = time.monotonic() + START_S
    while not (_answers(port) and _answers(ports["--ray-client-server-port"])):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = (folder / "start.log").read_text(errors="replace").strip().splitlines()[-5:]
            head.close()
            raise Unavailable(f"`ray start --head` did not start: {' | '.join(tail) or 'no output'}")
        time.sleep(0.2)
    return head
