"""Loaded models in one thread-safe LRU with a memory budget, shared by all pages and all sessions of the server
process, and :func:`load`, which resolves, downloads when needed, and loads through it.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from core.catalog import ModelSpec, get_spec
from core.config import get_settings
from core.errors import InputError, ModelTooLarge, ModelUnavailable
from core.measure import Measurement
from core.registry import sources
from core.registry.downloads import download
from core.registry.sources import Availability, Resolution

log = logging.getLogger("ubt.registry")


@dataclass
class Loaded:
    """A loaded model and what it cost to get it.

    Attributes:
        model: whatever the spec's loader returned.
        spec: the spec.
        resolution: where the weights came from.
        load_s: seconds this call spent loading, None when it was already in the cache.
        size_mb: memory charged to the budget.
    """

    model: Any
    spec: ModelSpec
    resolution: Resolution
    load_s: float | None
    size_mb: float

    def measurement(self, seconds: float, peak_mb: float, load_s: float | None = None, device: str | None = None,
                    engine: str | None = None, **extra: float) -> Measurement:
        """The Measurement of one call on this model.

        The memory the call added is the call's own (``peak_mb`` minus the memory in use when it
        began) plus this model's footprint when the model was loaded for the call.

        Args:
            seconds: the call's latency, load excluded.
            peak_mb: peak process memory during the call, from :class:`core.measure.PeakTracker`.
            load_s: load time to report when it differs from this model's own (e.g. two models loaded).
            device: device label when the model does not run where choose_device() says (e.g. CTranslate2).
            engine: what ran the model (see :data:`core.engines.ENGINES`); None: PyTorch, the Measurement's default.
            extra: task figures (``*_per_s`` rates, ``*_s`` durations ...).

        The number format is the model's own (its bundle's ``precision``, see :mod:`core.precision`) when it runs
        where choose_device() says, else the one ``device`` names (``cpu · int8 · ...``).
        """
        from core.device import choose_device
        from core.measure import added_mb
        from core.precision import BF16, bf16_label, format_in_label, format_of

        load_s = load_s if load_s is not None else self.load_s
        call_mb = added_mb(peak_mb)
        if device is None:
            device = choose_device().label()
            device = bf16_label(device) if format_of(self.model) == BF16 else device
        number_format = format_in_label(device)
        return Measurement(
            model=self.spec.key, model_id=self.spec.hub_id or self.spec.key, source=self.resolution.source,
            device=device, load_s=load_s, latency_s=seconds, peak_mb=peak_mb,
            extra=dict(extra),
            added_mb=None if call_mb is None else call_mb + (self.size_mb if load_s is not None else 0.0),
            engine=engine or Measurement.engine, number_format=number_format,
        )


# --- the shared cache ----------------------------------------------------------------------------
def torch_bytes(obj: Any, _seen: set | None = None) -> int:
    """Bytes of torch parameters and buffers reachable from obj (modules, containers, attributes)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    seen = _seen if _seen is not None else set()
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        tensors = list(obj.parameters()) + list(obj.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(torch_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(torch_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return sum(torch_bytes(v, seen) for v in vars(obj).values())
    return 0


@dataclass
class _Entry:
    loaded: Loaded
    last_used: float


class ModelCache:
    """Thread-safe LRU of loaded models within a memory budget.

    Two callers asking for the same key get one copy, loaded once: the second waits for the
    first. Before a load, least recently used entries are evicted until the newcomer fits.
    """

    def __init__(self, budget_mb: float) -> None:
        self.budget_mb = budget_mb
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.loads = 0
        self.evictions: list[str] = []

    def used_mb(self) -> float:
        """Memory charged by the models in the cache."""
        with self._lock:
            return sum(e.loaded.size_mb for e in self._entries.values())

    def snapshot(self) -> list[Loaded]:
        """The loaded models, most recently used last."""
        with self._lock:
            return [e.loaded for e in self._entries.values()]

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def hit(self, key: str) -> Loaded | None:
        """The model cached under ``key``, marked as just used (its ``load_s`` None), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            entry.last_used = time.monotonic()
            self._entries.move_to_end(key)
            return Loaded(entry.loaded.model, entry.loaded.spec, entry.loaded.resolution, None, entry.loaded.size_mb)

    def _make_room(self, needed_mb: float, title: str) -> None:
        if needed_mb > self.budget_mb:
            raise ModelTooLarge(
                f"{title} needs about {needed_mb:.0f} MB but the memory budget is {self.budget_mb:.0f} MB "
                "(set UBT_MEMORY_BUDGET_MB to raise it)."
            )
        with self._lock:
            while self._entries and sum(e.loaded.size_mb for e in self._entries.values()) + needed_mb > self.budget_mb:
                key, _ = self._entries.popitem(last=False)
                self.evictions.append(key)

    def get(self, key: str, spec: ModelSpec, resolution: Resolution, load: Callable[[], Any]) -> Loaded:
        """Return the cached model for key, or load it with ``load()`` and cache it.

        Raises:
            ModelTooLarge: when the spec's RAM estimate exceeds the whole budget.
        """
        hit = self.hit(key)
        if hit is not None:
            return hit
        with self._key_lock(key):
            hit = self.hit(key)  # another session may have loaded it while we waited
            if hit is not None:
                return hit
            self._make_room(spec.ram_mb, spec.title)
            start = time.perf_counter()
            model = load()
            load_s = time.perf_counter() - start
            # a runner that knows its own size (an engine's) says so; else count its tensors; else the spec's estimate
            size_mb = getattr(model, "size_mb", None) or max(torch_bytes(model) / 2**20, 0.0) or float(spec.ram_mb)
            loaded = Loaded(model, spec, resolution, load_s, size_mb)
            self._make_room(size_mb, spec.title)
            with self._lock:
                self._entries[key] = _Entry(loaded, time.monotonic())
                self.loads += 1
            return loaded

    def put(self, key: str, loaded: Loaded) -> None:
        """Place an already built model in the cache (used by tests with tiny models)."""
        with self._lock:
            self._entries[key] = _Entry(loaded, time.monotonic())
            self._entries.move_to_end(key)

    def clear(self) -> None:
        """Drop every model."""
        with self._lock:
            self._entries.clear()


CACHE = ModelCache(get_settings().memory_budget_mb)


def availability(spec: ModelSpec) -> Availability:
    """Resolve without raising: the loaded model's resolution, a source found here, or why there is none."""
    for loaded in CACHE.snapshot():
        if loaded.spec.key == spec.key:
            return Availability(spec, loaded.resolution)
    try:
        return Availability(spec, sources.resolve(spec))
    except ModelUnavailable as err:
        return Availability(spec, None, str(err))


def _loader(spec: ModelSpec) -> Callable[[ModelSpec, Resolution], Any]:
    module_name, func_name = spec.loader.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def load(key: str, int8: bool = False) -> Loaded:
    """Load a model by catalog key through the shared cache.

    Args:
        key: catalog key.
        int8: the dynamically quantised (int8 linear layers) variant, made from the float model.

    Returns:
        Loaded, with ``load_s`` None when the model was already loaded.

    Raises:
        ModelUnavailable: no source here (the message says how to get one).
        ModelTooLarge: it cannot fit the memory budget.
    """
    if int8:
        return _load_int8(key)
    spec = get_spec(key)
    hit = CACHE.hit(key)
    if hit is not None:
        return hit
    resolution = sources.resolve(spec)
    return CACHE.get(key, spec, resolution, lambda: _fetch_and_load(spec, resolution))


def _fetch_and_load(spec: ModelSpec, resolution: Resolution) -> Any:
    """Download first when the weights come from the network, then load them from the local copy."""
    if resolution.source == "hub":
        download(spec)
        resolution = Resolution("hub-cache", resolution.location, resolution.detail)
    return _load_from(spec, resolution)


def _load_from(spec: ModelSpec, resolution: Resolution) -> Any:
    """Call the spec's loader; a failure to read the weights becomes a message naming where they were."""
    try:
        return _loader(spec)(spec, resolution)
    except (InputError, ModelUnavailable, ModelTooLarge):
        raise
    except Exception as err:
        detail = str(err).strip().rstrip(".")
        log.exception("loading %s from %s failed", spec.key, resolution.location)
        raise ModelUnavailable(
            f"{spec.title} could not be loaded from {resolution.detail or resolution.location} "
            f"({type(err).__name__}: {detail[:300]}). The files may be incomplete or damaged: "
            "download or install them again."
        ) from err


def _load_int8(key: str) -> Loaded:
    import copy

    from core.device import quantize_int8

    variant = f"{key}@int8"
    hit = CACHE.hit(variant)
    if hit is not None:
        return hit
    base = load(key)
    loaded = CACHE.get(variant, base.spec, base.resolution, lambda: quantize_int8(copy.deepcopy(base.model)))
    if base.load_s is not None and loaded.load_s is not None:
        loaded.load_s += base.load_s
    return loaded


def install(key: str, model: Any, source: str = "test") -> None:
    """Put a ready model under a catalog key (tests use it for tiny models built from configs)."""
    spec = get_spec(key)
    CACHE.put(key, Loaded(model, spec, Resolution(source, "in memory", "built in this process"), None, torch_bytes(model) / 2**20))


_preload_started = threading.Event()


def preload_in_background(keys: tuple[str, ...], load_one: Callable[[str], object] | None = None) -> bool:
    """Load ``keys`` once per process in a daemon thread, so first visitors don't wait for them.

    Each load takes a ``classify`` turn on the app's line (:func:`core.queue.line`): a kind's first turn runs
    alone, so the preload never imports torch beside a visitor's first model call.

    Args:
        keys: catalog keys.
        load_one: how to load one key (default :func:`load`), e.g. on the engine its page uses.

    Returns:
        True when this call started the thread, False when it already ran or there is nothing to load.
    """
    if not keys or _preload_started.is_set():
        return False
    _preload_started.set()
    from core.queue import line

    def work() -> None:
        for key in keys:
            try:
                with line().turn("classify"):
                    (load_one or load)(key)
            except Exception as err:  # a missing model must not stop the others
                log.warning("preloading %s failed: %s", key, err)

    threading.Thread(target=work, name="ubt-preload", daemon=True).start()
    return True
