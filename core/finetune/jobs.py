"""Training jobs that run in background threads, with one server-wide slot for heavy training.

A :class:`Job` runs a list of :class:`Step` s one after the other in its own thread, so a page
stays responsive and the job survives reruns (the page keeps the Job in its session state and
reads :meth:`Job.snapshot`). Heavy steps (fine-tuning, training from scratch) first take
:data:`SLOT`: at most one heavy step runs in the whole server process at a time, and the others
wait in first-come-first-served order, each knowing its place. The slot is released in a
``finally``, so a step that crashes frees it and reports its error as a message.

Remote steps (arms running as Ray tasks, :mod:`core.finetune.ray_backend`, when ``UBT_RAY_ADDRESS`` is set) run
side by side, each waited on by a thread of its own, and take no slot: their work runs on the cluster's cores.
Which steps a Fine-tune run has, and where they run, is :mod:`core.finetune.training`'s.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from core.errors import InputError, ModelTooLarge, ModelUnavailable
from core.progress import OnProgress, Progress, ShouldStop, never

log = logging.getLogger(__name__)

_ids = itertools.count(1)
LOCAL_BACKEND = "this server"


class Cancelled(Exception):
    """A step ended without a result because it was stopped (e.g. its Ray task was cancelled); says so in one line."""


class StepFailed(Exception):
    """A step failed for a reason said in one line (e.g. the Ray worker running it died); shown as it is."""


class TrainingSlot:
    """A process-wide slot with a FIFO queue: one holder at a time, the rest wait in order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: object | None = None
        self._queue: deque[object] = deque()

    def acquire(self, owner: object, should_stop: ShouldStop = never, poll_s: float = 0.1) -> bool:
        """Wait for the slot in turn.

        Args:
            owner: who holds it (any object; compared by identity).
            should_stop: when it returns True while waiting, give up.
            poll_s: how often ``should_stop`` is asked.

        Returns:
            True once ``owner`` holds the slot; False when ``should_stop`` said so first.
        """
        with self._cond:
            self._queue.append(owner)
            try:
                while self._holder is not None or self._queue[0] is not owner:
                    if should_stop():
                        return False
                    self._cond.wait(poll_s)
                self._holder = owner
                return True
            finally:
                self._queue.remove(owner)
                self._cond.notify_all()

    def release(self, owner: object) -> None:
        """Give the slot back (does nothing when ``owner`` does not hold it)."""
        with self._cond:
            if self._holder is owner:
                self._holder = None
                self._cond.notify_all()

    @contextmanager
    def hold(self, owner: object, should_stop: ShouldStop = never):
        """Hold the slot for a block; yields False (and holds nothing) when stopped while waiting."""
        acquired = self.acquire(owner, should_stop)
        try:
            yield acquired
        finally:
            if acquired:
                self.release(owner)

    def place(self, owner: object) -> int | None:
        """0 while ``owner`` holds the slot, 1.. its place in the queue, None when neither."""
        with self._cond:
            if self._holder is owner:
                return 0
            for position, waiting in enumerate(self._queue, start=1):
                if waiting is owner:
                    return position
            return None

    def busy(self) -> bool:
        """Whether someone holds the slot."""
        with self._cond:
            return self._holder is not None


SLOT = TrainingSlot()


@dataclass(frozen=True)
class Step:
    """One unit of work in a job.

    Attributes:
        name: short id (an arm name, ``label-efficiency`` ...).
        title: shown to people.
        heavy: takes the server-wide slot while it runs.
        run: ``run(on_progress, should_stop) -> result``; calls ``on_progress(Progress)`` and asks ``should_stop()``.
        remote: its work runs elsewhere (a Ray task): it starts with the job, alongside the other remote steps,
            and takes no slot.
    """

    name: str
    title: str
    heavy: bool
    run: Callable[[OnProgress, ShouldStop], Any]
    remote: bool = False


@dataclass
class StepState:
    """Where a step stands: ``waiting``, ``queued``, ``running``, ``done``, ``stopped`` or ``error``."""

    name: str
    title: str
    heavy: bool
    status: str = "waiting"
    fraction: float = 0.0
    message: str = ""
    curve: list[dict] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    place: int | None = None


FINISHED = ("done", "stopped", "error")
CURVE_FIGURES = ("step", "epoch", "loss", "accuracy", "val_loss")  # a curve point, from Progress.metrics


class Job:
    """Steps run in order in a daemon thread (remote steps side by side); read its state with :meth:`snapshot`.

    Attributes:
        backend: where the steps run, for people (``this server``, ``Ray cluster at ...``).
        notes: what people should know about how it runs (e.g. the cluster could not be reached).
    """

    def __init__(self, steps: list[Step], slot: TrainingSlot = SLOT,
                 on_result: Callable[[str, Any], None] | None = None, backend: str = LOCAL_BACKEND,
                 notes: list[str] | None = None, on_end: Callable[[], None] | None = None) -> None:
        self.id = next(_ids)
        self.steps = steps
        self.slot = slot
        self.on_result = on_result
        self.backend = backend
        self.notes = list(notes or [])
        self.on_end = on_end
        self.stop_event = threading.Event()
        self.started = time.time()
        self._states = [StepState(s.name, s.title, s.heavy) for s in steps]
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"training-job-{self.id}", daemon=True)

    def start(self) -> "Job":
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the running step to stop at its next check, and skip the steps not started."""
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job to end; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True when no step is left to run."""
        return not self._thread.is_alive() and all(s.status in FINISHED for s in self._states)

    def snapshot(self) -> list[StepState]:
        """Copies of the steps' states (safe to read while the job runs); queued steps carry their place."""
        with self._lock:
            states = [replace(s, curve=list(s.curve)) for s in self._states]
        for state in states:
            if state.status == "queued":
                state.place = self.slot.place(self)
        return states

    def results(self) -> dict[str, Any]:
        """Results of the steps that finished with one, by step name."""
        return {s.name: s.result for s in self.snapshot() if s.result is not None}

    def _update(self, state: StepState, **changes) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(state, name, value)

    def _progress(self, state: StepState) -> OnProgress:
        """The step's ``on_progress``: the fraction and message, and a curve point for an update with figures."""
        def report(event: Progress) -> None:
            with self._lock:
                state.fraction, state.message = event.fraction, event.message
                if event.metrics:
                    state.curve.append({name: event.metrics.get(name) for name in CURVE_FIGURES})
        return report

    def _run(self) -> None:
        remote = [threading.Thread(target=self._run_step, args=pair, name=f"training-job-{self.id}-{pair[0].name}",
                                   daemon=True) for pair in zip(self.steps, self._states) if pair[0].remote]
        try:
            for thread in remote:
                thread.start()
            for step, state in zip(self.steps, self._states):
                if not step.remote:
                    self._run_step(step, state)
            for thread in remote:
                thread.join()
        finally:
            if self.on_end is not None:
                try:
                    self.on_end()
                except Exception:  # cleaning up must never hide the results
                    log.exception("ending training job %s", self.id)

    def _run_step(self, step: Step, state: StepState) -> None:
        if self.stop_event.is_set():
            self._update(state, status="stopped", message="Not started: the job was stopped.")
            return
        try:
            if step.heavy and not step.remote:
                self._update(state, status="queued", message="Waiting for the training slot")
                with self.slot.hold(self, self.stop_event.is_set) as acquired:
                    if not acquired:
                        self._update(state, status="stopped", message="Stopped while queued.")
                        return
                    self._update(state, status="running", message="Started")
                    result = step.run(self._progress(state), self.stop_event.is_set)
            else:
                self._update(state, status="running", message="Started")
                result = step.run(self._progress(state), self.stop_event.is_set)
            stopped = bool(getattr(result, "stopped", False)) and self.stop_event.is_set()
            self._update(state, result=result, fraction=1.0, status="stopped" if stopped else "done",
                         message="Stopped; scored as it was." if stopped else "Finished")
            if self.on_result is not None:
                self.on_result(step.name, result)
        except Cancelled as err:
            self._update(state, status="stopped", message=str(err))
        except (InputError, ModelUnavailable, ModelTooLarge, StepFailed) as err:
            self._update(state, status="error", error=str(err), message="Could not run")
        except Exception as err:  # a crash must reach the page as a message, never kill the server
            log.exception("training step %s failed", step.name)
            self._update(state, status="error", error=f"{type(err).__name__}: {err}", message="Failed")
