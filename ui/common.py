"""Streamlit building blocks every page uses, so pages stay thin."""
from __future__ import annotations

import logging
import uuid
from contextlib import contextmanager

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from core.errors import EngineStopped, InputError, ModelTooLarge, ModelUnavailable
from core.measure import Measurement

log = logging.getLogger("ubt")

SOURCE_LABELS = {
    "local": "local folder",
    "hub-cache": "Hub (cached)",
    "hub": "Hub (download)",
    "package": "PyPI package",
    "bundled": "trained by this project",
    "test": "test model",
    "hosted": "hosted API (weights not here)",
}


def session_id() -> str:
    """A random id for this browser session (kept in session state, never tied to a person)."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex)


def page_link(page: str, label: str, icon: str, query: dict[str, str] | None = None) -> None:
    """A link to another page (``query``: its query parameters); plain text when this script runs outside the app's
    navigation."""
    try:
        st.page_link(page, label=label, icon=icon, query_params=query)
    except StreamlitPageNotFoundError:
        st.markdown(f"{icon} **{label}** (open it from the app's navigation)")


@contextmanager
def friendly_errors(action: str):
    """Turn any failure inside the block into a clear message; the rest of the page keeps working.
    A model download started inside the block shows its progress there (also in a fragment's rerun)."""
    from ui.downloads import download_progress

    try:
        with download_progress():
            yield
    except InputError as err:
        st.warning(str(err), icon=":material/edit_note:")
    except ModelUnavailable as err:
        st.warning(f"{err} Pick another model from the list, or see README → Models.", icon=":material/cloud_off:")
    except ModelTooLarge as err:
        st.error(str(err), icon=":material/memory:")
    except EngineStopped as err:  # its runner process died; the server and every other session carry on
        log.warning("%s: %s", action, err)
        st.error(str(err), icon=":material/restart_alt:")
    except Exception as err:  # the app must survive anything a model or an input throws
        log.exception("%s failed", action)
        detail = str(err).strip().rstrip(".")
        st.error(f"{action} failed: {type(err).__name__}: {detail}. Nothing else was affected; try again or pick another model.")


def _fmt_seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _extra_metric(name: str, value: float) -> tuple[str, str]:
    """Label and text for a Measurement.extra entry, from its name: ``*_per_s`` is a rate,
    ``*_s`` a duration, ``*_mb`` memory, anything else a plain number."""
    words = name.replace("_", " ")
    if name.endswith("_per_s"):
        return words[: -len(" per s")].capitalize() + "/s", f"{value:,.1f}"
    if name.endswith("_s"):
        return words[:-2].capitalize(), _fmt_seconds(value)
    if name.endswith("_mb"):
        return words[:-3].capitalize(), f"{value:,.0f} MB"
    if name.endswith("_usd"):
        return words[:-4].capitalize() + " ($)", f"${value:,.4g}"
    return words.capitalize(), f"{value:,.3g}"


METRICS_PER_ROW = 4
LOADED_HELP = "Time this run spent loading the model: only its first use pays it."
CACHED_HELP = "The model was already in memory, so this run loaded nothing."
ADDED_HELP = ("Memory this run needed: its peak minus what the server held before it, plus the model's own "
              "size when this run loaded it.")
HOSTED_HELP = "From sending the request to the last piece of the answer, network included."
PEAK_HELP = ("The whole server process at its highest during this run: every model loaded, Streamlit and other "
             "people's runs included. Not what this run needed: see Memory added.")


def engine_label(name: str) -> str:
    """What people read for an engine name: its title from :data:`core.engines.ENGINES`, or "hosted API"."""
    from core.engines import ENGINES
    from core.runs import HOSTED_ENGINE

    if name == HOSTED_ENGINE:
        return "hosted API"
    return ENGINES[name].title if name in ENGINES else name


def engine_of(m: Measurement) -> str:
    """The engine a measurement ran on; a hosted call's is always ``hosted``."""
    from core.runs import HOSTED_ENGINE

    return HOSTED_ENGINE if m.source == "hosted" else m.engine


def show_measurement(m: Measurement, narrow: bool = False) -> None:
    """Render a result's measurements: model, source, engine, number format, device, load time, latency, memory,
    extras.

    Args:
        m: the measurement.
        narrow: drawn in half the page (side by side): two figures per row instead of four, so none is cut off.
    """
    per_row = 2 if narrow else METRICS_PER_ROW
    weights = "" if m.source == "hosted" else f"**weights** {SOURCE_LABELS.get(m.source, m.source)} · "
    with st.container(border=True):
        engine = engine_label(engine_of(m))
        if m.number_format not in ("fp32", "unknown"):  # PyTorch's title says float32: name what really ran
            engine = engine.replace("float32", m.number_format)
        st.caption(f"**Model** `{m.model_id}` · {weights}**engine** {engine} · **number format** {m.number_format} · "
                   f"**device** {m.device}")
        if m.source == "hosted":  # nothing loads or runs here: the figures are the call's
            metrics = [("Latency", _fmt_seconds(m.latency_s), HOSTED_HELP)]
        else:
            metrics = [
                ("Load (first use)", "cached", CACHED_HELP) if m.load_s is None
                else ("Load (first use)", _fmt_seconds(m.load_s), LOADED_HELP),
                ("Latency", _fmt_seconds(m.latency_s), None),
                ("Memory added", "—" if m.added_mb is None else f"{m.added_mb:,.0f} MB", ADDED_HELP),
                ("Peak memory", f"{m.peak_mb:,.0f} MB", PEAK_HELP),
            ]
        metrics += [(*_extra_metric(name, value), None) for name, value in m.extra.items()]
        for start in range(0, len(metrics), per_row):
            cols = st.columns(per_row)
            for col, (label, value, help_text) in zip(cols, metrics[start : start + per_row]):
                col.metric(label, value, help=help_text)


def record(m: Measurement, page: str, task: str, params: dict | None = None, metrics: dict | None = None) -> None:
    """Store a run's measurements (never its inputs) in the run store, with its engine; a hosted call is recorded as
    "call an API" (:func:`core.runs.record_run` decides), with its charge."""
    from core import runs

    runs.record_run(
        page=page, task=task, model=m.model, source=m.source, device=m.device, params=params or {},
        load_s=m.load_s, wall_s=m.latency_s, peak_mb=m.peak_mb, added_mb=m.added_mb,
        metrics={**m.extra, **(metrics or {})}, session_id=session_id(),
        api_cost_usd=m.extra.get("cost_usd") if m.source == runs.HOSTED_SOURCE else None, engine=m.engine,
        number_format=m.number_format,
    )
