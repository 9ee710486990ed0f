"""Model downloads with progress: into the Hugging Face cache (or openai-whisper's), only the files the loader
reads, after checking the free disk; progress goes to whoever listens (:func:`download_listener`).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import glob
import hashlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from core.catalog import ModelSpec
from core.config import get_settings
from core.errors import ModelUnavailable
from core.registry.sources import hub_files, remote_url, whisper_root

log = logging.getLogger("ubt.registry")


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
    target = whisper_root() / f"{spec.hub_id}.pt"
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
