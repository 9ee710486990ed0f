"""Fine-tune arms as Ray tasks on a cluster (``UBT_RAY_ADDRESS``); without it, jobs run in this process.

Ray is an optional extra (``pip install -r requirements-ray.txt``), imported only here and only when a cluster is
asked for. :func:`plan` connects once per process (the project's ``core`` package and this server's ``UBT_``
settings travel with the job as its runtime environment), puts the data in Ray's object store once, and returns
one :class:`~core.finetune.jobs.Step` per arm. Each remote step submits a Ray task that asks for ``UBT_RAY_CPUS``
CPUs (and a GPU for the arms that train with torch, where the cluster has one) and waits for it in a thread of the
job. Progress comes back through a small actor (:func:`channel_class`) the task pushes
:class:`~core.progress.Progress` events into. Stop sets a flag in that actor, which the task reads as its
``should_stop`` (training ends and is scored as it was, as in process, which it says it is doing); a task that has
not seen Stop :data:`GRACE_S` later, or not ended :data:`WIND_DOWN_S` later, is cancelled (``ray.cancel``), and
:data:`FORCE_S` after that by force. A worker that dies fails its arm in
one line; the other arms go on. The call-an-API arm stays on this server: it waits on the network, and its key
never leaves this process.

A cluster that goes away: Ray ends a driver process whose cluster stays unreachable (after
``RAY_gcs_rpc_server_reconnect_timeout_s``, 60 s by default), or whose node's raylet has died when it next calls
Ray. This server is that driver, so :func:`connect` sets the timeout out of reach, and every Ray call of a job is
preceded by a check that the head still answers (:meth:`Cluster.alive`): a head that does not fails the job's
arms in one line, and the next job connects afresh or trains here. With a ``ray://`` address (Ray Client) this
process is not a Ray driver at all, and a lost cluster is only an error.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from core.config import OPENMP_WAIT, get_settings
from core.finetune import arms, jobs
from core.progress import OnProgress, Progress, ShouldStop

log = logging.getLogger(__name__)

CORE = Path(__file__).resolve().parents[1]  # the project's ``core`` package, shipped to the cluster
GRACE_S = 3.0  # after Stop: how long a task has to say it saw Stop before ray.cancel
WIND_DOWN_S = 60.0  # how long a task that saw Stop may take to score its model as it was before ray.cancel
FORCE_S = 2.0  # after ray.cancel: how long before the task is cancelled by force (its worker process ends)
POLL_S = 0.2  # how often a job's thread looks for progress, the task's end and Stop
STOP_POLL_S = 0.25  # how often a task asks whether Stop was pressed
CONNECT_TIMEOUT_S = 3.0
INIT_ATTEMPTS = 2  # Ray Client connections: see _init
RETRY_PAUSE_S = 1.0
PROBE_S = 1.0  # how often a job checks that the head still answers
DRIVER_ENV = {"RAY_gcs_rpc_server_reconnect_timeout_s": str(10**8)}  # never end this process for a lost cluster
REMOTE = ("zero-shot", "transfer", "fine-tune", "scratch", arms.LABEL_CURVE)  # api and prompt stay on this server
TORCH_TRAINING = ("fine-tune", "scratch")  # arms that can train on a GPU (scratch on images only)
SERVER_ONLY = {"UBT_RAY_ADDRESS", "UBT_RAY_CPUS", "UBT_RUNS_URL", "UBT_RUNS_DB", "UBT_THREADS", "UBT_PRELOAD"}
INSTALL = "pip install -r requirements-ray.txt"


class Unreachable(Exception):
    """The cluster cannot be used (not installed, not reachable, refused us); the message is one line."""


@dataclass(frozen=True)
class Cluster:
    """A Ray cluster this process is connected to.

    Attributes:
        address: as configured (``ray://head:10001``, ``auto``, ``127.0.0.1:6379``).
        cpus: CPUs each arm asks for.
        gpus: GPUs in the cluster (arms that train with torch ask for one when there are any).
        probe: (host, port) that answers while the cluster is up: the Ray Client server or the head's GCS.
    """

    address: str
    cpus: int
    gpus: float
    probe: tuple[str, int] | None = None

    def alive(self) -> bool:
        """Whether the head still answers on :attr:`probe` (asked at most every :data:`PROBE_S` seconds)."""
        if self.probe is None:
            return True
        now = time.monotonic()
        with _lock:
            asked_at, answered = _probes.get(self.probe, (-PROBE_S, True))
        if now - asked_at < PROBE_S:
            return answered
        answered = _answers(self.probe, CONNECT_TIMEOUT_S)
        with _lock:
            _probes[self.probe] = (now, answered)
        return answered

    def describe(self) -> str:
        """E.g. ``Ray cluster at ray://head:10001``."""
        return f"Ray cluster at {self.address}"


_lock = threading.RLock()
_cluster: Cluster | None = None
_probes: dict[tuple[str, int], tuple[float, bool]] = {}


def _answers(where: tuple[str, int], timeout_s: float) -> bool:
    try:
        socket.create_connection(where, timeout=timeout_s).close()
        return True
    except OSError:
        return False


def one_line(err: BaseException) -> str:
    """The first line of an error's message (Ray's carry tracebacks), at most 200 characters."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``ray://host:port`` or ``host:port``; None for ``auto`` and anything without a port."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def runtime_env(cpus: int) -> dict:
    """What the job's tasks run with: the ``core`` package, and this server's ``UBT_`` settings, except those that
    are this server's own (its run store, its Ray address), with ``UBT_THREADS`` set to the CPUs each arm asks for."""
    env = {name: value for name, value in os.environ.items()
           if (name.startswith("UBT_") and name not in SERVER_ONLY) or name in ("HF_HUB_OFFLINE", *OPENMP_WAIT)}
    env |= {"UBT_THREADS": str(cpus), "UBT_PRELOAD": ""}
    return {"py_modules": [str(CORE)], "env_vars": env, "excludes": ["__pycache__", "*.pyc"]}


def connect(address: str, cpus: int = 1, timeout_s: float = CONNECT_TIMEOUT_S) -> Cluster:
    """Connect this process to the cluster at ``address`` (once; later calls reuse the connection).

    Args:
        address: ``ray://host:port`` (Ray Client), ``host:port`` (the head's GCS) or ``auto``.
        cpus: CPUs each arm asks for.
        timeout_s: the longest to wait for the head's port to answer.

    Returns:
        The Cluster.

    Raises:
        Unreachable: Ray is not installed, the address does not answer, or Ray refused to connect (one line).
    """
    global _cluster
    with _lock:
        try:
            import ray
        except ImportError:
            raise Unreachable(f"Ray is not installed here ({INSTALL}), so the cluster at {address} cannot be used.") from None
        if _cluster is not None and _cluster.address == address and _cluster.cpus == cpus and ray.is_initialized():
            if _cluster.alive():
                return _cluster
            log.warning("%s stopped answering: reconnecting", _cluster.describe())
        where = _host_port(address)
        if where is not None:
            try:
                socket.create_connection(where, timeout=timeout_s).close()
            except OSError as err:
                raise Unreachable(f"The Ray cluster at {address} did not answer ({one_line(err)}).") from None
        _reset(ray)
        _cluster = None
        for name, value in DRIVER_ENV.items():
            os.environ.setdefault(name, value)
        try:
            _init(ray, address, cpus)
            gpus = float(ray.cluster_resources().get("GPU", 0))
            probe = where if address.startswith("ray://") else _host_port(ray.get_runtime_context().gcs_address)
        except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError ... for a cluster it cannot use
            log.warning("ray.init(%r) failed", address, exc_info=True)  # the page shows one line; the log has the trace
            _reset(ray)
            raise Unreachable(f"Could not connect to the Ray cluster at {address}: {one_line(err)}") from None
        _cluster = Cluster(address, cpus, gpus, probe)
        log.info("connected to %s (%g GPU)", _cluster.describe(), gpus)
        return _cluster


def _init(ray, address: str, cpus: int) -> None:
    """``ray.init``, tried once more after :data:`RETRY_PAUSE_S` where a Ray Client server failed to start this client's
    own server process ("Initialization failure from server", a ConnectionAbortedError; seen once in CI against a
    cluster started seconds before). Any other failure, or a second one, is raised."""
    for attempt in range(1, INIT_ATTEMPTS + 1):
        try:
            ray.init(address=address, runtime_env=runtime_env(cpus), namespace="use-before-you-train",
                     log_to_driver=False, logging_level=logging.WARNING)
            return
        except ConnectionAbortedError:
            if attempt == INIT_ATTEMPTS:
                raise
            log.warning("ray.init(%r) failed on the server's side: trying once more", address, exc_info=True)
            _reset(ray)
            time.sleep(RETRY_PAUSE_S)


def _reset(ray) -> None:
    """End whatever connection this process has, or half has, to a cluster, so that ``ray.init`` starts clean.

    Always, not only when ``ray.is_initialized()``: a Ray Client connection that was lost is no longer "initialized",
    and a ``ray.init("ray://...")`` that failed leaves Ray's client mode switched on with no client connected
    (Ray 2.60), after which a ``ray.init`` to a head's GCS address fails with a bare AssertionError
    (``_internal_kv_initialized``; ray-project/ray#47167). ``ray.shutdown()`` switches client mode off.
    """
    ray.shutdown()


def disconnect() -> None:
    """Drop this process's connection to the cluster (tests, and before connecting elsewhere)."""
    global _cluster
    with _lock:
        _cluster = None
        try:
            import ray
        except ImportError:
            return
        _reset(ray)


@functools.cache
def channel_class():
    """The actor class that carries a job's progress from its tasks to this server, and Stop the other way."""
    import ray

    @ray.remote(num_cpus=0, max_restarts=0)
    class Channel:
        def __init__(self) -> None:
            self.events: dict[str, list[Progress]] = {}
            self.where: dict[str, tuple[str, int]] = {}
            self.seen: set[str] = set()
            self.stop = False

        def push(self, step: str, event: Progress) -> None:
            self.events.setdefault(step, []).append(event)

        def started(self, step: str, node: str, pid: int) -> None:
            self.where[step] = (node, pid)

        def take(self, step: str) -> tuple[list[Progress], tuple[str, int] | None, bool]:
            return self.events.pop(step, []), self.where.get(step), step in self.seen

        def request_stop(self) -> None:
            self.stop = True

        def stopping(self, step: str) -> bool:
            if self.stop:
                self.seen.add(step)
            return self.stop

    return Channel


def _label_curve(data, train_idx, test_idx, settings, on_progress, should_stop):
    transfer, zero_shot = settings
    return arms.label_efficiency(data, train_idx, test_idx, transfer, zero_shot)


def runner_for(step: str) -> Callable:
    """The function that runs ``step`` (an arm's name, or ``label-efficiency``) with the arms' signature."""
    return _label_curve if step == arms.LABEL_CURVE else arms.RUNNERS[step]


def run_in_worker(step: str, runner: Callable | None, data, train_idx: list[int], test_idx: list[int], settings,
                  channel) -> Any:
    """The Ray task: run one arm (or the label-efficiency curve) in a worker of the cluster.

    Args:
        step: the arm's name, or ``label-efficiency``.
        runner: ``runner(data, train_idx, test_idx, settings, on_progress, should_stop)``; None: the step's own.
        data: LabelledData (Ray hands the task the object put in its store).
        train_idx, test_idx: the split.
        settings: the arm's settings dataclass ((transfer, zero-shot) for the curve).
        channel: the job's Channel actor: progress goes in, Stop comes out.

    Returns:
        The arm's ArmResult, its device naming the node (``ray node 10.0.0.5 · cpu · ...``); the curve's rows.
    """
    import ray

    node = ray.util.get_node_ip_address()
    channel.started.remote(step, node, os.getpid())
    asked = {"at": 0.0, "stop": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if not asked["stop"] and now - asked["at"] >= STOP_POLL_S:
            asked["at"] = now
            try:
                asked["stop"] = bool(ray.get(channel.stopping.remote(step), timeout=10))
            except Exception:  # the channel is gone: the job that wanted this has ended
                asked["stop"] = True
        return asked["stop"]

    def on_progress(event: Progress) -> None:
        channel.push.remote(step, event)

    result = (runner or runner_for(step))(data, list(train_idx), list(test_idx), settings, on_progress, should_stop)
    if isinstance(result, arms.ArmResult):
        result.device = f"ray node {node} · {result.device}"
    return result


@functools.cache
def _remote_task():
    import ray

    return ray.remote(max_retries=0)(run_in_worker)


@dataclass(eq=False)
class RemoteRun:
    """One step as a Ray task: the ``run`` of a remote :class:`~core.finetune.jobs.Step`.

    Attributes:
        cluster, step, data_ref, train_idx, test_idx, settings, channel: what the task runs with.
        gpus: GPUs it asks for (0 or 1).
        runner: what the task runs (None: the step's arm); any function of the arms' signature that the cluster can
            import or that Ray can pickle by value.
        ref: the task's ObjectRef once submitted.
        node, pid: where it runs, once it has started (the worker's IP address and process id).
        seen_stop: the task has read Stop (it is scoring its model as it was).
    """

    cluster: Cluster
    step: str
    data_ref: Any
    train_idx: list[int]
    test_idx: list[int]
    settings: Any
    channel: Any
    gpus: float = 0.0
    runner: Callable | None = None
    ref: Any = None
    node: str | None = None
    pid: int | None = None
    seen_stop: bool = False

    def where(self) -> str:
        """``ray node 10.0.0.5, pid 1234``, or ``a Ray worker`` before it has started."""
        return f"ray node {self.node}, pid {self.pid}" if self.node else "a Ray worker"

    def _drain(self, on_progress: OnProgress) -> None:
        import ray

        events, where, self.seen_stop = ray.get(self.channel.take.remote(self.step), timeout=5)
        if where is not None and self.node is None:
            self.node, self.pid = where
            on_progress(Progress(0.0, 1.0, f"Running on {self.where()}"))
        for event in events:
            on_progress(event)

    def __call__(self, on_progress: OnProgress, should_stop: ShouldStop) -> Any:
        import ray

        self.ref = _remote_task().options(num_cpus=self.cluster.cpus, num_gpus=self.gpus,
                                          name=f"ubt-{self.step}").remote(
            self.step, self.runner, self.data_ref, self.train_idx, self.test_idx, self.settings, self.channel)
        on_progress(Progress(0.0, 1.0, f"Waiting for a Ray worker ({self.cluster.cpus} CPU"
                                       f"{', 1 GPU' if self.gpus else ''})"))
        stop_at, cancelled_at, cancelled, forced = None, 0.0, False, False
        while True:
            if not self.cluster.alive():  # no Ray call on a cluster that is gone: Ray would end this process
                raise jobs.StepFailed(f"The {self.cluster.describe()} stopped answering while this arm ran on "
                                      f"{self.where()}; it did not finish.")
            try:
                done, _ = ray.wait([self.ref], timeout=POLL_S)
            except Exception as err:  # Ray Client: the connection is lost (after its grace period)
                raise jobs.StepFailed(f"Lost the {self.cluster.describe()} while this arm ran on {self.where()}: "
                                      f"{one_line(err)}") from None
            try:
                self._drain(on_progress)
            except Exception:  # Ray's errors, and Ray Client's ConnectionError for a lost cluster
                pass  # progress is lost with the channel; the task's own end (or the check above) says what happened
            if done:
                break
            if not should_stop():
                continue
            now = time.monotonic()
            if stop_at is None:
                stop_at = now
                self.channel.request_stop.remote()
                if self.node is None:  # not started yet: it never will
                    ray.cancel(self.ref)
                    cancelled, cancelled_at = True, now
            elif not cancelled and now - stop_at > (WIND_DOWN_S if self.seen_stop else GRACE_S):
                ray.cancel(self.ref)
                cancelled, cancelled_at = True, now
            elif cancelled and not forced and now - cancelled_at > FORCE_S:
                ray.cancel(self.ref, force=True)
                forced = True
        return self._outcome(cancelled, forced)

    def _outcome(self, cancelled: bool, forced: bool) -> Any:
        """The task's result, or the one-line exception the job shows."""
        import ray
        from ray import exceptions as rex

        try:
            return ray.get(self.ref)
        except rex.TaskCancelledError:
            if self.node is None:
                raise jobs.Cancelled("Not started: the job was stopped.") from None
            raise jobs.Cancelled(f"Stopped: the Ray task on {self.where()} was cancelled by force." if forced else
                                 f"Stopped: the Ray task on {self.where()} was cancelled before it could score its "
                                 "model.") from None
        except rex.RayTaskError as err:  # the arm raised: the same error as in process
            cause = getattr(err, "cause", None)
            if isinstance(cause, Exception) and not isinstance(cause, rex.RayError):
                raise cause from None
            raise jobs.StepFailed(f"The arm failed on {self.where()}: {one_line(err)}") from None
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError, rex.OwnerDiedError) as err:
            if cancelled:
                raise jobs.Cancelled(f"Stopped: the Ray task on {self.where()} was cancelled by force.") from None
            raise jobs.StepFailed(f"The Ray worker running this arm ({self.where()}) died before it finished: "
                                  f"{type(err).__name__}.") from None
        except rex.RayError as err:
            raise jobs.StepFailed(f"Ray could not run this arm: {one_line(err)}") from None


@dataclass
class RayPlan:
    """A job's steps on the cluster and what they share.

    Attributes:
        steps: one Step per chosen arm, in :data:`arms.ARMS` order (remote ones run as Ray tasks), then the curve.
        cluster: where they run.
        data_ref: the data in Ray's object store.
        channel: the job's Channel actor.
    """

    steps: list
    cluster: Cluster
    data_ref: Any
    channel: Any

    @property
    def backend(self) -> str:
        """``Ray cluster at ...``, for the page."""
        return self.cluster.describe()

    def close(self) -> None:
        """End the channel actor and let the store drop the data (the job calls this when every step is over)."""
        import ray

        try:
            if self.cluster.alive():
                ray.kill(self.channel)
        except Exception as err:  # the cluster may already be gone
            log.info("could not end the channel actor: %s", one_line(err))
        self.data_ref = self.channel = None


def plan(address: str, data, train_idx, test_idx, chosen: dict[str, Any], label_curve: bool = False,
         cpus: int | None = None) -> RayPlan:
    """Connect to the cluster and make the Ray steps of a job: one per arm a Ray task runs (:data:`REMOTE`; the API
    and prompt arms, and the prompt curve, stay on this server, with the key and the generation engine).

    Args:
        address: the cluster's address.
        data: LabelledData (put in Ray's object store once, shared by every task).
        train_idx, test_idx: the split.
        chosen: {arm name: its settings dataclass}.
        label_curve: add the label-efficiency curve (a Ray task too).
        cpus: CPUs each arm asks for; None reads ``UBT_RAY_CPUS``.

    Returns:
        The RayPlan.

    Raises:
        Unreachable: the cluster cannot be used (one line).
    """
    cluster = connect(address, get_settings().ray_cpus if cpus is None else cpus)
    import ray

    try:
        data_ref = ray.put(data)
        channel = channel_class().remote()
    except Exception as err:
        raise Unreachable(f"The Ray cluster at {address} did not take the job: {one_line(err)}") from None
    train, test = [int(i) for i in train_idx], [int(i) for i in test_idx]
    wanted = {arm: chosen[arm] for arm in arms.ARMS if arm in chosen}
    if label_curve:
        wanted[arms.LABEL_CURVE] = arms.label_curve_settings(chosen)
    steps = []
    for name, settings in wanted.items():
        if name not in REMOTE:
            continue  # stays on this server (the job keeps its in-process step)
        gpus = 1.0 if cluster.gpus >= 1 and name in TORCH_TRAINING and (name != "scratch" or data.kind == "image") else 0.0
        title = arms.LABEL_CURVE_TITLE if name == arms.LABEL_CURVE else arms.TITLES[name]
        run = RemoteRun(cluster, name, data_ref, train, test, settings, channel, gpus)
        steps.append(jobs.Step(name, title, name in arms.HEAVY, run, remote=True))
    return RayPlan(steps, cluster, data_ref, channel)
