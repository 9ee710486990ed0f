"""The shared sidebar and the model picker: both read the catalog's availability, checked once for all
sessions and kept for a few minutes."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core import registry, runs
from core.catalog import FAMILIES, ModelSpec, specs
from core.config import get_settings
from core.device import device_summary
from core.measure import rss_mb
from core.precision import device_note
from ui import hosted
from ui.common import SOURCE_LABELS

NOT_HERE = "not here"
FIGURES_SLOT = "sidebar_figures_slot"  # session state: where this session's sidebar figures are drawn


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
        lines = [f"{':material/check_circle:' if r.source != NOT_HERE else ':material/block:'} {r.title} — {r.source}"
                 for r in rows if r.family == family]
        if lines:
            blocks.append(f"**{family}**  \n" + "  \n".join(lines))
    return "\n\n".join(blocks)


def _draw_figures(slot) -> None:
    budget = get_settings().memory_budget_mb
    used, process = registry.CACHE.used_mb(), rss_mb()
    with slot.container():
        st.caption(f"**Device:** {device_summary()} · {device_note()} · {runs.store_label()}")
        st.caption(f"**Memory:** models {used:,.0f} MB of a {budget:,} MB budget · process {process:,.0f} MB")
        st.progress(min(used / max(budget, 1), 1.0))


def sidebar() -> None:
    """Draw the sidebar once per run: device, memory in use against the budget, and which models are
    available from where."""
    with st.sidebar:
        runs.configure(hosted.secrets())  # [connections.runs] url: the run store's database (UBT_RUNS_URL first)
        slot = st.empty()
        st.session_state[FIGURES_SLOT] = slot
        _draw_figures(slot)
        with st.expander("Models available here", expanded=False):
            st.caption(_availability_text(_availability()))
        st.caption(hosted.configured_caption())  # which providers have a key; never the keys


def refresh_sidebar() -> None:
    """Draw the sidebar's device and memory figures again, as they are now (replacing the earlier ones).

    app.py calls it after the page, so the figures include what the page loaded. A page section that
    reruns on its own (``st.fragment``) calls it at its end: such a run leaves the sidebar as it was, and
    it must draw there in the page's whole runs too, for Streamlit to keep its place.
    """
    slot = st.session_state.get(FIGURES_SLOT)
    if slot is not None:  # None: a page script run on its own, without app.py
        _draw_figures(slot)


def model_picker(label: str, task: str, key: str, family: str | None = None) -> ModelSpec:
    """A selectbox of the catalog's models for a task, available ones first, each with its source."""
    sources = {r.key: r.source for r in _availability()}
    options = sorted(specs(family=family, task=task), key=lambda s: sources.get(s.key) == NOT_HERE)
    return st.selectbox(label, options, key=key, format_func=lambda s: f"{s.title} — {sources.get(s.key, '?')}")
