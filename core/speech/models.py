"""Whisper models on two backends: openai-whisper (PyTorch) and faster-whisper (CTranslate2, int8), as the registry
loads them, and what a spec says about its backend and languages."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from core.catalog import ModelSpec
from core.device import choose_device
from core.errors import ModelUnavailable
from core.registry import Resolution

OPENAI_WHISPER = "openai-whisper"
FASTER_WHISPER = "faster-whisper"
BACKENDS = (FASTER_WHISPER, OPENAI_WHISPER)  # the first works offline (packaged weights)


# --- loaders (called by the registry) -------------------------------------------------------------
@dataclass
class TorchWhisper:
    """An openai-whisper model. Its decoder keeps a key/value cache in hooks on shared modules,
    so two decodes on one model must not overlap: ``lock`` serialises them."""

    model: Any
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass
class CT2Whisper:
    """A faster-whisper model (CTranslate2), running on CPU in int8."""

    model: Any
    threads: int


def backend(spec: ModelSpec) -> str:
    """``openai-whisper`` or ``faster-whisper``, from the spec."""
    return spec.options["backend"]


def english_only(spec: ModelSpec) -> bool:
    """Whether the model knows English only (the ``.en`` models: no language choice, no translation)."""
    return bool(spec.options.get("english_only"))


def _openai_checkpoint(spec: ModelSpec, resolution: Resolution) -> str:
    if resolution.source != "local":
        return spec.hub_id  # a name openai-whisper finds in its cache, or downloads
    from pathlib import Path

    location = Path(resolution.location)
    if location.is_file():
        return str(location)
    named = location / f"{spec.hub_id}.pt"
    found = [named] if named.is_file() else sorted(location.glob("*.pt"))
    if not found:
        raise ModelUnavailable(f"{location} holds no openai-whisper checkpoint (a .pt file such as {spec.hub_id}.pt).")
    return str(found[0])


def load_openai_whisper(spec: ModelSpec, resolution: Resolution) -> TorchWhisper:
    """Load an openai-whisper checkpoint (by name from its cache or download, or a local .pt)."""
    import whisper

    from core.precision_probes import settle_whisper

    runner = TorchWhisper(whisper.load_model(_openai_checkpoint(spec, resolution), device=choose_device().device).eval())
    runner.precision = settle_whisper(spec.key, runner.model, resolution.location)  # bf16 where it pays here
    return runner


def load_faster_whisper(spec: ModelSpec, resolution: Resolution) -> CT2Whisper:
    """Load a faster-whisper model (a CTranslate2 folder, or a Hub id) on CPU in int8."""
    from faster_whisper import WhisperModel

    threads = choose_device().threads
    if resolution.source in ("local", "package"):
        model = WhisperModel(resolution.location, device="cpu", compute_type="int8", cpu_threads=threads)
    else:
        model = WhisperModel(
            spec.hub_id, device="cpu", compute_type="int8", cpu_threads=threads,
            local_files_only=resolution.local_files_only,
        )
    return CT2Whisper(model, threads)
