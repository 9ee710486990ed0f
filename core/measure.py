"""Measurements that travel with every result: wall time and memory of one call.

Two memory figures, because they answer different questions:

* the **process peak** is the whole server process's resident memory at its highest during the
  call: every model loaded, Streamlit and other sessions' work included;
* the memory a call **added** is that peak minus the resident memory when the call began (plus the
  model's own footprint when the model was loaded for the call, counted by
  :meth:`core.registry.Loaded.measurement`): what this call needed.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

_PROCESS = psutil.Process()


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    return _PROCESS.memory_info().rss / 2**20


@dataclass
class Measurement:
    """What one inference cost, measured on this machine.

    Attributes:
        model: catalog key of the model.
        model_id: where it came from (Hub id or folder).
        source: weight source kind (``local``, ``hub-cache``, ``hub``, ``package``, ``bundled``, ``test``).
        device: device label.
        load_s: seconds spent loading the model for this call, None when it was already loaded.
        latency_s: seconds of the inference itself, load excluded.
        peak_mb: peak resident memory of the whole process during the call.
        extra: task-specific figures (tokens/s, real-time factor, s/step, items/s ...).
        added_mb: memory the call added: its peak minus resident memory before it, plus the model's
            footprint when it was loaded for the call; None when not measured.
        engine: what ran the model (a key of ``core.engines.ENGINES``, e.g. ``torch``, ``llama.cpp``,
            ``onnxruntime``, ``ctranslate2``), or ``hosted`` for a call to an API.
        number_format: the number format it ran in: ``fp32``, ``bf16`` or ``int8`` (a GGUF quantisation as named,
            e.g. ``q4_1``; ``fp16`` on a GPU); ``unknown`` for a call to an API (see core/precision.py).
    """

    model: str
    model_id: str
    source: str
    device: str
    load_s: float | None
    latency_s: float
    peak_mb: float
    extra: dict[str, float] = field(default_factory=dict)
    added_mb: float | None = None
    engine: str = "torch"
    number_format: str = "fp32"


class PeakMB(float):
    """A peak in MB that also remembers the resident memory when its block began.

    It is a float everywhere, so code that passes ``timing.peak_mb`` along carries the baseline
    with it, and :func:`added_mb` reads it back.
    """

    def __new__(cls, peak_mb: float, start_mb: float) -> "PeakMB":
        value = super().__new__(cls, peak_mb)
        value.start_mb = float(start_mb)
        return value

    def __reduce__(self):
        return PeakMB, (float(self), self.start_mb)


def added_mb(peak_mb: float) -> float | None:
    """Memory a measured block added: its peak minus the resident memory when it began.

    Args:
        peak_mb: a peak from :class:`PeakTracker` or :func:`measured`.

    Returns:
        MB, never negative; None when ``peak_mb`` is a plain number (no baseline known).
    """
    start = getattr(peak_mb, "start_mb", None)
    return None if start is None else max(float(peak_mb) - start, 0.0)


_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _high_water_mb() -> float | None:
    """Peak resident memory since the last reset (Linux VmHWM), or None where unavailable."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_high_water() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return _high_water_mb() is not None
    except OSError:
        return False


_measuring = 0  # blocks measuring now, in every thread: the high-water mark is reset only when none is
_MEASURING_LOCK = threading.Lock()


class PeakTracker:
    """Peak process memory during a block (plus CUDA memory when torch uses it).

    ``peak_mb`` is a :class:`PeakMB`: it also holds the memory in use when the block began.

    On Linux the kernel's own high-water mark is reset at the start and read at the end, which
    costs nothing while the block runs. The mark is process-wide, so it is reset only by a block that
    begins while no other block is measuring: a reset never lowers another session's reading. A block
    that begins while others measure samples RSS with a thread, and also takes the mark when the mark
    rose during the block (it can only have risen then, as nobody resets it meanwhile). Where the
    kernel has no resettable mark, a thread samples RSS (it competes with torch's worker threads for
    the cores, so it is only the fallback).
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.start_mb = self.peak_mb = 0.0  # set when the block begins
        self._cuda_start_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._kernel_mark = False

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __enter__(self) -> "PeakTracker":
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start_mb = torch.cuda.memory_allocated() / 2**20
        global _measuring
        with _MEASURING_LOCK:
            self._kernel_mark = _measuring == 0 and _reset_high_water()
            self._mark_before = None if self._kernel_mark else _high_water_mb()
            _measuring += 1
        self.start_mb = self.peak_mb = rss_mb()
        if not self._kernel_mark:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        global _measuring
        mark = _high_water_mb()
        with _MEASURING_LOCK:
            _measuring -= 1
        if not self._kernel_mark and (mark is None or self._mark_before is None or mark <= self._mark_before):
            mark = None  # the mark did not move during the block: it holds an earlier peak, not this block's
        peak, start = max(self.peak_mb, rss_mb(), mark or 0.0), self.start_mb
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            peak += torch.cuda.max_memory_allocated() / 2**20
            start += self._cuda_start_mb
        self.peak_mb = PeakMB(peak, start)


@dataclass
class Timing:
    """Wall time and peak memory (a :class:`PeakMB`) filled in by :func:`measured`."""

    seconds: float = 0.0
    peak_mb: float = 0.0


@contextmanager
def measured():
    """Time a block and track its peak memory.

    Yields:
        A Timing whose fields are set when the block ends.
    """
    timing = Timing()
    with PeakTracker() as tracker:
        start = time.perf_counter()
        try:
            yield timing
        finally:
            timing.seconds = time.perf_counter() - start
    timing.peak_mb = tracker.peak_mb
