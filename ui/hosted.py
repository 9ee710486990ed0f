"""The "call an API" form every family page shares: provider, base URL, model, key, timeout and prices.

A key typed here lives in this browser session's state only (Streamlit keeps session state per session);
it is never echoed, logged, stored in the run store, or put in a URL.
"""
from __future__ import annotations

import os

import streamlit as st

from core import providers
from core.errors import InputError

KEY_SOURCES = {"this session": "typed on this page (this session only)", "secrets": "the app's secrets",
               "environment": "an environment variable", "none": "no key"}


def secrets() -> dict:
    """The app's secrets as a plain dict; empty when the app has no secrets file."""
    try:
        return dict(st.secrets)
    except Exception:  # no secrets.toml anywhere: Streamlit raises on first access
        return {}


def configured_caption() -> str:
    """One line naming the providers that have a key configured (never the keys)."""
    found = providers.configured(secrets())
    if not found:
        return "Hosted APIs: no key configured (set one in secrets or the environment, or type one on a page)."
    return "Hosted APIs with a key: " + ", ".join(f"{providers.PROVIDERS[k].title.split(' (')[0]} ({v})" for k, v in found.items())


def endpoint_form(kind: str | tuple[str, ...], task: str, key: str) -> providers.Endpoint | None:
    """Draw the endpoint fields for one call kind; return the endpoint, or None (with a message) when incomplete.

    Args:
        kind: the call kind, e.g. ``providers.CHAT``, or several (``providers.IMAGE_KINDS``): any of them will do.
        task: which example model and API root to offer (``chat``, ``vision``, ``transcription``, ``images``).
        key: a prefix for the widgets' keys, unique on the page.
    """
    kinds = {kind} if isinstance(kind, str) else set(kind)
    choices = [p.key for p in providers.PROVIDERS.values() if kinds & set(p.kinds)]
    env_url = secrets().get("OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL", "")
    provider_key = st.selectbox("Provider", choices, key=f"{key}_provider",
                                format_func=lambda k: providers.PROVIDERS[k].title)
    provider = providers.PROVIDERS[provider_key]
    c1, c2 = st.columns(2)
    base_url = c1.text_input("Base URL", key=f"{key}_{provider_key}_base_url", value=provider.task_urls.get(task) or provider.base_url or env_url,
                             placeholder="http://127.0.0.1:8080/v1", help="The API root, ending in /v1 for OpenAI-compatible servers.")
    model = c2.text_input("Model", key=f"{key}_{provider_key}_model", value=provider.models.get(task, ""),
                          help="The model name as the endpoint knows it.")
    c3, c4 = st.columns([3, 1])
    kept = f"{key}_api_key_kept"  # widget state is dropped on another page; this copy keeps it for the session
    if f"{key}_api_key" not in st.session_state and kept in st.session_state:
        st.session_state[f"{key}_api_key"] = st.session_state[kept]
    typed = c3.text_input("API key (this session only)", key=f"{key}_api_key", type="password",
                          help="Kept in this browser session's memory only: never stored, logged or shown. "
                          "Press Enter to use it.", on_change=_keep_key, args=(key,))
    timeout = c4.number_input("Timeout (s)", 1, 600, 60, key=f"{key}_timeout")
    prices = _price_editor(provider, key)
    try:
        point = providers.endpoint(provider_key, model=model, base_url=base_url, session_key=typed, task=task,
                                   secrets=secrets(), timeout_s=float(timeout), prices=prices)
    except InputError as err:
        st.warning(str(err), icon=":material/edit_note:")
        return None
    st.caption(f"Key: {KEY_SOURCES[point.key_source]}.")
    return point


def _keep_key(key: str) -> None:
    """Copy the typed key out of the widget's state, which Streamlit drops when the page is left."""
    st.session_state[f"{key}_api_key_kept"] = st.session_state.get(f"{key}_api_key", "")


def _price_editor(provider: providers.Provider, key: str) -> providers.Prices:
    example = provider.prices
    with st.expander(f"Prices (examples, {example.as_of or 'enter your own'})", expanded=False):
        c1, c2, c3, c4 = st.columns(4)
        return providers.Prices(
            input_per_m=c1.number_input("$ / 1M input tokens", 0.0, 1000.0, example.input_per_m, 0.01, key=f"{key}_p_in"),
            output_per_m=c2.number_input("$ / 1M output tokens", 0.0, 1000.0, example.output_per_m, 0.01, key=f"{key}_p_out"),
            per_image=c3.number_input("$ / image", 0.0, 100.0, example.per_image, 0.001, format="%.3f", key=f"{key}_p_img"),
            per_audio_minute=c4.number_input("$ / audio minute", 0.0, 100.0, example.per_audio_minute, 0.001,
                                             format="%.3f", key=f"{key}_p_audio"),
            as_of=example.as_of,
        )


def hosted_error(err: providers.HostedError) -> None:
    """Show a hosted failure in one line; the rest of the page keeps working."""
    icon = {"no-key": ":material/key_off:", "unreachable": ":material/cloud_off:",
            "rate-limited": ":material/hourglass_top:"}.get(err.kind, ":material/error:")
    st.error(str(err), icon=icon)


# --- runs on a family page ---------------------------------------------------------------------------
LOCAL, HOSTED, BOTH = "This server", "Hosted API", "Both, side by side"


def hosted_endpoint(where: str, title: str, kind: str | tuple[str, ...], task: str, key: str
                    ) -> providers.Endpoint | None:
    """The endpoint form in an open expander titled ``title`` when ``where`` runs the hosted side, else None.

    Returns:
        The endpoint, or None when nothing is hosted or the form is incomplete (see :func:`endpoint_form`).
    """
    if where == LOCAL:
        return None
    with st.expander(title, expanded=True):
        return endpoint_form(kind, task, key)


def outputs(where: str):
    """Where the two runs draw: two bordered, headed columns side by side for Both, else one place for
    whichever runs. Returns (this server's, the hosted API's)."""
    if where != BOTH:
        return st.container(), st.container()
    local_out, hosted_out = st.columns(2, border=True)
    local_out.markdown("**This server**")
    hosted_out.markdown("**Hosted API**")
    return local_out, hosted_out


def where_picker(key: str) -> str:
    """Where to run: this server, a hosted API, or both on the same input."""
    return st.segmented_control("Run on", [LOCAL, HOSTED, BOTH], default=LOCAL, key=key,
                                help="A hosted API runs the model elsewhere: no weights here, a price per call.") or LOCAL


def call(point: providers.Endpoint, what: str, function, *args, **kwargs):
    """Run one hosted call (``function(point, *args, **kwargs)``) under a spinner; None (with one line said) when it
    failed, so the rest of the page keeps working."""
    try:
        with st.spinner(f"Calling {point.label} ({what}) ..."):
            return function(point, *args, **kwargs)
    except providers.HostedError as err:
        hosted_error(err)
        return None


def comparison(local, hosted, unit: str, here: float, there: float) -> None:
    """One line comparing a local and a hosted run of the same input: latency, a rate, and the hosted cost.

    Args:
        local, hosted: the two Measurements.
        unit: what the rate counts (``images``, ``audio s``).
        here, there: the rate (``unit`` per second) of the local and of the hosted run.
    """
    cost = hosted.extra.get("cost_usd", 0.0)
    faster = "The hosted API" if there > here else "This server"
    ratio = max(here, there) / max(min(here, there), 1e-12)
    st.info(f"**Same input, both ways:** this server {local.latency_s:.2f} s ({here:,.2f} {unit}/s, no charge per "
            f"call) · hosted {hosted.latency_s:.2f} s ({there:,.2f} {unit}/s, ${cost:,.4f}). {faster} was "
            f"{ratio:.1f}× faster on this run.", icon=":material/compare_arrows:")
