"""The shared sidebar and the model picker: both read the catalog's availability, checked once for all
sessions and kept for a few minutes."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import registry
from core.catalog import FAMILIES, ModelSpec, specs
from core.config import get_settings
from core.device import device_summary
from core.measure import Measurement, rss_mb
from ui.common import SOURCE_LABELS

NOT_HERE = "not here"


@dataclass(frozen=True)
class Available:
    """Where one catalog model would load from here (``NOT_HERE`` when nowhere)."""

    family: str
    title: str
    key: str
    source: str


@st.cache_resource(ttl=300, show_spinner=False)
def _availability() -> tuple[Available, ...]:
    """Every catalog model's source, shared by all sessions (read-only), checked again after 5 minutes."""
    rows = []
    for spec in specs():
        answer = registry.availability(spec)
        source = SOURCE_LABELS.get(answer.resolution.source, "?") if answer.resolution else NOT_HERE
        rows.append(Available(spec.family, spec.title, spec.key, source))
    return tuple(rows)


def _availability_text(rows: tuple[Available, ...]) -> str:
    """The list of models by family, as one block of markdown (one element instead of one per model)."""
    blocks = []
    for family in FAMILIES:
        lines = [f"{'✅' if r.source != NOT_HERE else '⛔'} {r.title} — {r.source}" for r in rows if r.family == family]
        if lines:
            blocks.append(f"**{family}**  \n" + "  \n".join(lines))
    return "\n\n".join(blocks)


def show_memory(slot) -> None:
    """Draw the memory figures (models in the cache against the budget, the process) into ``slot``, an
    ``st.empty()``; drawing again replaces them."""
    budget = get_settings().memory_budget_mb
    used, process = registry.CACHE.used_mb(), rss_mb()
    with slot.container():
        st.caption(f"**Memory:** models {used:,.0f} MB of a {budget:,} MB budget · process {process:,.0f} MB")
        st.progress(min(used / max(budget, 1), 1.0))


def refresh_after_load(measurement: Measurement) -> None:
    """After a section's own run (``st.fragment``) that loaded a model, rerun the whole page once, so the
    sidebar's device and memory figures include the model: a fragment's run leaves the sidebar as it was."""
    ctx = get_script_run_ctx()
    if measurement.load_s is not None and ctx is not None and ctx.fragment_ids_this_run:
        st.rerun()


def sidebar():
    """Draw the sidebar once per run: device, memory in use against the budget, and which models are
    available from where.

    Returns:
        The memory slot: pass it to :func:`show_memory` after the page has run, so the figures include
        what the page just loaded.
    """
    with st.sidebar:
        st.caption(f"**Device:** {device_summary()}")
        memory = st.empty()
        show_memory(memory)
        with st.expander("Models available here", expanded=False):
            st.caption(_availability_text(_availability()))
    return memory


def model_picker(label: str, task: str, key: str, family: str | None = None) -> ModelSpec:
    """A selectbox of the catalog's models for a task, available ones first, each with its source."""
    sources = {r.key: r.source for r in _availability()}
    options = sorted(specs(family=family, task=task), key=lambda s: sources.get(s.key) == NOT_HERE)
    return st.selectbox(label, options, key=key, format_func=lambda s: f"{s.title} — {sources.get(s.key, '?')}")
