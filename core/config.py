"""Settings read once from environment variables that start with ``UBT_``.

Every knob of the app lives here, as one frozen dataclass, so pages and core modules never read
the environment themselves.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ENV_PREFIX = "UBT_"
# How OpenMP's threads wait (torch's and llama.cpp's share one libgomp): a thread waiting at a barrier inside a
# computation spins for up to ~0.5 ms (10,000 pauses), then sleeps. PASSIVE alone made every barrier a sleep and
# a wake-up: llama.cpp, which meets one per operator, decoded at 20 tokens/s instead of 100. OpenMP's default
# spins 30 times longer, and each script run's idle team burnt ~8 ms of CPU after a click (bench/clicks.py).
OPENMP_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}


def set_openmp_wait() -> None:
    """Set :data:`OPENMP_WAIT` in this process's environment (values already set win). Call it before torch or
    llama.cpp is imported: OpenMP reads these once, when it loads."""
    for name, value in OPENMP_WAIT.items():
        os.environ.setdefault(name, value)


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "use-before-you-train"


@dataclass(frozen=True)
class Settings:
    """All configuration of the app.

    Attributes:
        memory_budget_mb: memory the model cache may hold, shared by all pages and sessions. The default,
            1600, holds the Image-text page's CLIP ViT-B/32 and BLIP base together and leaves room for
            Python, torch and Streamlit inside Community Cloud's 2.7 GB (measured: README, Deploy).
        model_dir: a folder holding downloaded weights, one sub-folder per Hub id
            (``<model_dir>/openai-community/gpt2``); checked before anything else.
        offline: never contact the Hub (also set by ``HF_HUB_OFFLINE=1``).
        hub_timeout_s: the longest an availability check waits on the network.
        data_dir: where the run store lives, by default.
        converted_dir: where weights converted once (e.g. GGUF to safetensors) are kept.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: torch intra-op threads; 0 means the CPU share of this process (cgroup quota, affinity).
        max_text_chars: longer inputs are truncated, with a note.
        max_batch_lines: most lines classified in one go.
        preload: catalog keys to load in the background when the server starts; ``auto`` (the default) is the
            Text page's default sentiment model (see :func:`core.engines.preload`); empty: none.
        max_audio_s: longest audio accepted for transcription.
        feature_cache_mb: memory for cached encoder features on the Fine-tune page.
        model_slots: model calls served at once, for all sessions (core/queue.py); 0 means half the torch
            threads, at least 1.
        bf16: ``auto`` (bfloat16 where this CPU runs it natively and a probe at first use keeps it, see
            core/precision.py), ``1`` (always bfloat16) or ``0`` (never).
        ray_address: a Ray cluster to run the Fine-tune page's arms on, one Ray task each (``ray://head:10001``,
            ``auto``, ``127.0.0.1:6379``); empty (the default): in threads of this server process.
        ray_cpus: CPUs each arm asks the Ray cluster for (its torch threads there).
    """

    memory_budget_mb: int = 1600
    model_dir: Path | None = None
    offline: bool = False
    hub_timeout_s: float = 2.0
    data_dir: Path = Path()
    converted_dir: Path = Path()
    device: str = "auto"
    threads: int = 0
    max_text_chars: int = 5000
    max_batch_lines: int = 200
    preload: tuple[str, ...] = ()
    max_audio_s: float = 600.0
    feature_cache_mb: float = 256.0
    model_slots: int = 0
    bf16: str = "auto"
    ray_address: str = ""
    ray_cpus: int = 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the settings from the environment (once per process)."""
    model_dir = _env("MODEL_DIR", "")
    data_dir = Path(_env("DATA_DIR", str(_default_data_dir()))).expanduser()
    return Settings(
        memory_budget_mb=int(_env("MEMORY_BUDGET_MB", "1600")),
        model_dir=Path(model_dir).expanduser() if model_dir else None,
        offline=_flag(_env("OFFLINE", "0")) or _flag(os.environ.get("HF_HUB_OFFLINE", "0")),
        hub_timeout_s=float(_env("HUB_TIMEOUT_S", "2")),
        data_dir=data_dir,
        converted_dir=Path(_env("CONVERTED_DIR", str(data_dir / "converted"))).expanduser(),
        device=_env("DEVICE", "auto").lower(),
        threads=int(_env("THREADS", "0")),
        max_text_chars=int(_env("MAX_TEXT_CHARS", "5000")),
        max_batch_lines=int(_env("MAX_BATCH_LINES", "200")),
        max_audio_s=float(_env("MAX_AUDIO_S", "600")),
        feature_cache_mb=float(_env("FEATURE_CACHE_MB", "256")),
        model_slots=int(_env("MODEL_SLOTS", "0")),
        bf16=_env("BF16", "auto").strip().lower() or "auto",
        ray_address=_env("RAY_ADDRESS", "").strip(),
        ray_cpus=max(1, int(_env("RAY_CPUS", "1"))),
        preload=tuple(k.strip() for k in _env("PRELOAD", "auto").split(",") if k.strip()),
    )
