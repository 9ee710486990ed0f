"""Model downloads shown on the page: a progress bar with bytes, speed and time left, then one line."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from core.registry import DownloadProgress, download_listener


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 10e6 else f"{n / 1e6:,.0f} MB"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 10 else f"{minutes} min"


def progress_text(p: DownloadProgress) -> str:
    """One line for people, e.g. ``Downloading BLIP: 120 MB of 990 MB · 14.2 MB/s · about 1 min 01 s left``."""
    if p.finished and not p.failed:
        speed = f" ({_mb(p.speed_bps)}/s)" if p.speed_bps else ""
        return f"Downloaded {p.title}: {_mb(p.total_bytes)} in {_duration(p.elapsed_s)}{speed}."
    parts = [f"Downloading {p.title}: {_mb(p.done_bytes)} of {_mb(p.total_bytes)}"]
    if p.speed_bps:
        parts.append(f"{_mb(p.speed_bps)}/s")
    if p.eta_s is not None and p.done_bytes:
        parts.append(f"about {_duration(p.eta_s)} left")
    return " · ".join(parts)


@contextmanager
def download_progress():
    """Show the progress of every model download started inside the block, where the download starts.

    The bar is placed by the first report, which comes from the script's own thread; later reports may
    come from huggingface_hub's download threads, which are attached to this script run to update it.
    A finished download leaves one line (size, time, speed); a failed one leaves nothing, since the page
    shows the error.
    """
    ctx = get_script_run_ctx()
    script_thread = threading.current_thread()
    lock = threading.Lock()
    slots: dict[str, object] = {}

    def show(p: DownloadProgress) -> None:
        if not p.total_bytes:
            return  # everything was already in the cache
        if threading.current_thread() is not script_thread:
            if ctx is None:
                return
            add_script_run_ctx(threading.current_thread(), ctx)
        with lock:
            slot = slots.get(p.title)
            if slot is None:
                if threading.current_thread() is not script_thread:
                    return  # only the script's thread knows where on the page the bar belongs
                slot = slots[p.title] = st.empty()
            if p.failed:
                slot.empty()
            elif p.finished:
                slot.caption(f":material/download_done: {progress_text(p)}")
            else:
                slot.progress(p.fraction, text=progress_text(p))

    with download_listener(show):
        yield
