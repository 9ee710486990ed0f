"""Summary: effort (time, memory, $) against impact (quality) for every run measured here."""
from __future__ import annotations

import copy

import streamlit as st

from core import costs, imagegen, runs
from core.charts import summary as charts
from ui.common import page_link, session_id

SCOPES = ("this session", "everyone on this server")
MEMORY_NOTE = (
    "**Memory added**: the most one run added, i.e. its peak minus what the server held before it, plus the "
    "model's own size when the run loaded it. **Process peak**: the whole server at its highest during a run, "
    "with every model other runs left loaded: not what the approach needs. A dash: not measured (runs recorded "
    "before this figure existed)."
)


TRAINING_FORMATS = {
    "median training time (s)": "{:.2f}", "median training cost ($)": "{:.5f}", "memory added (MB)": "{:,.0f}",
    "process peak (MB)": "{:,.0f}", "data needed (examples)": "{:,.0f}", "best accuracy": "{:.3f}",
    "best macro-F1": "{:.3f}",
}
INFERENCE_FORMATS = {
    "median load time (s)": "{:.2f}", "median latency (s)": "{:.3f}", costs.SPEED_UP: "{:.1f}",
    "memory added (MB)": "{:,.0f}", "process peak (MB)": "{:,.0f}", "$ per 1,000 calls": "{:.4f}",
}


# Everything below is drawn from the store's runs, read again only when runs.store_version() changes: a
# rerun of an unchanged store (a filter, a price) reads and tables nothing. The cached objects are shared
# by every session, so nothing here changes them.
@st.cache_resource(max_entries=2, show_spinner=False)
def _stored(version: tuple):
    """Every stored run."""
    return runs.fetch_runs()


@st.cache_resource(max_entries=8, show_spinner=False)
def _enriched(version: tuple, rates: costs.Rates):
    """Every stored run, with effort and impact at these prices."""
    return costs.enrich(_stored(version), rates)


def _chosen(version: tuple, rates: costs.Rates, session: str | None, task: str, data: str):
    """The runs the filters choose (a new frame; the cached one is left as it is)."""
    return costs.select(_enriched(version, rates), session, task, data)


@st.cache_resource(max_entries=32, show_spinner=False)
def _tables(version: tuple, rates: costs.Rates, session: str | None, task: str, data: str):
    """The chapter's two tables, written out."""
    chosen = _chosen(version, rates, session, task, data)
    return (costs.written_out(costs.training_table(chosen), TRAINING_FORMATS),
            costs.written_out(costs.inference_table(chosen, rates), INFERENCE_FORMATS))


@st.cache_resource(max_entries=32, show_spinner=False)
def _csv(version: tuple, session: str | None, task: str, data: str) -> bytes:
    """The chosen runs as CSV (no prices in it)."""
    return runs.to_csv(_chosen(version, costs.Rates(), session, task, data)[list(runs.COLUMNS)])


@st.cache_resource(max_entries=32, show_spinner=False)
def _spec(chart: str, version: tuple, rates: costs.Rates | None, session: str | None, task: str, data: str) -> dict:
    """A chart's Vega-Lite spec (``chart``: an effort in charts.EFFORTS, or ``latency``; ``rates``: None when it does
    not depend on prices). Building and validating one costs tens of ms: done once per store version and filter."""
    chosen = _chosen(version, rates or costs.Rates(), session, task, data)
    built = charts.latency_chart(chosen) if chart == "latency" else charts.effort_impact_chart(chosen, chart)
    spec = built.to_dict()
    spec.pop("config", None)  # altair's default theme sizes every chart 300 px; st.altair_chart drops it too
    spec["datasets"] = {name: _arrow(rows) for name, rows in spec["datasets"].items()}
    return spec


def _arrow(rows: list[dict]) -> bytes:
    """Chart data as the Arrow IPC stream streamlit sends, so that a rerun sends it as it is."""
    import pandas as pd
    import pyarrow as pa

    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.RecordBatchStreamWriter(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _draw(spec: dict) -> None:
    """Draw a cached spec, on a copy of what streamlit changes: it moves the data out and may patch the encoding."""
    st.vega_lite_chart({**spec, "encoding": copy.deepcopy(spec["encoding"])}, width="stretch")


def _rates() -> costs.Rates:
    """The hourly prices, as the reader set them."""
    with st.expander("Cost model (assumptions you can edit)", icon=":material/payments:"):
        st.markdown(
            "A run costs its **compute seconds** (model load + run time) ÷ 3600 × the **hourly price** of "
            "the host it ran on, in US dollars. CPU runs are priced as a small CPU host, runs on a GPU "
            "as a one-GPU host. The defaults are rough on-demand prices, not quotes; idle time, storage "
            "and network are not counted."
        )
        cpu_col, gpu_col = st.columns(2)
        defaults = costs.Rates()
        return costs.Rates(
            cpu_usd_per_h=cpu_col.number_input(
                "CPU host ($/h)", min_value=0.0, value=defaults.cpu_usd_per_h, step=0.05, format="%.2f", key="rate_cpu"
            ),
            gpu_usd_per_h=gpu_col.number_input(
                "GPU host ($/h)", min_value=0.0, value=defaults.gpu_usd_per_h, step=0.10, format="%.2f", key="rate_gpu"
            ),
        )


@st.fragment
def priced(version: tuple, session: str | None, task: str, data: str) -> None:
    """Everything a price changes, in a fragment: editing a price reruns this part only."""
    rates = _rates()
    chosen = _chosen(version, rates, session, task, data)

    # --- effort against impact ----------------------------------------------------------------------
    st.subheader("Effort against impact")
    unit = st.segmented_control(
        "Effort in", list(charts.EFFORTS), default="seconds", required=True, key="summary_effort"
    )
    scored = int(chosen["impact"].notna().sum())
    if scored:
        _draw(_spec(unit, version, rates if unit == "dollars" else None, session, task, data))
        missing = charts.left_out(chosen, unit)
        st.caption(
            f"{scored} of {len(chosen)} runs have a quality figure (macro-F1, else accuracy, on a "
            "held-out split); plain inference runs have none and appear in the latency chart below. "
            "Shape: the engine that ran the model. An approach that trained nothing counts its held-out inference."
            + (f" Not drawn: {len(missing)} run(s) with no {unit} measured ({', '.join(sorted(set(missing['approach'])))}), "
               "which a log axis cannot show." if len(missing) else "")
        )
    else:
        st.info(
            "None of these runs has a quality figure yet: quality is measured on the Fine-tune page, "
            "which scores every approach on the same held-out split."
        )
        page_link("app_pages/fine_tune.py", "Fine-tune: measure quality per approach", ":material/model_training:")

    if (chosen["kind"] == "inference").any():
        _draw(_spec("latency", version, None, session, task, data))

    # --- the chapter's two tables, measured ---------------------------------------------------------
    training, inference = _tables(version, rates, session, task, data)
    st.subheader("Training considerations")
    st.caption("Per approach. Using a model as is needs no training: its time, cost and data are 0; prompting it with "
               "examples trains nothing either, but its data is the examples in the prompt.")
    st.table(training, hide_index=True)
    if scratch := imagegen.digits_training_record():
        st.caption(
            f"**Train-from-scratch reference:** the digits generator on the Image generation page "
            f"({scratch['parameters']:,} parameters) was trained by this project for {scratch['train_seconds']:.0f} s "
            f"({scratch['steps']} steps, {scratch['hardware']}), "
            f"${costs.cost_usd(scratch['train_seconds'], 'cpu', rates):.4f} at the CPU rate; "
            f"{scratch['sample_accuracy']:.0%} of its samples are read as the requested digit."
        )

    st.subheader("Inference considerations")
    st.caption("Per family, model, engine, number format (fp32, bf16, int8) and device. Load time is the median over "
               "cold starts; cost prices the median latency. **Speed-up vs PyTorch**: the same model's median latency "
               "on PyTorch in float32 over this row's, on the same kind of host.")
    st.table(inference, hide_index=True)
    st.caption(MEMORY_NOTE)


st.title("Summary: effort against impact")
st.caption("Every figure below was measured on this server, by the runs people made on the other pages.")

# --- filters ------------------------------------------------------------------------------------
left, middle, right = st.columns(3)
scope = left.segmented_control(
    "Runs from", SCOPES, default=SCOPES[1], required=True, key="summary_scope"
)
session = session_id() if scope == SCOPES[0] else None
version = runs.store_version()
prices = costs.Rates(st.session_state.get("rate_cpu", costs.Rates().cpu_usd_per_h),
                     st.session_state.get("rate_gpu", costs.Rates().gpu_usd_per_h))
stored = _chosen(version, prices, session, costs.ALL_TASKS, costs.ALL_DATA)
if note := runs.store_status():
    st.info(note, icon=":material/database:")

# --- empty store: how to fill it ----------------------------------------------------------------
if stored.empty:
    where = "in this session" if scope == SCOPES[0] else "on this server"
    st.info(
        f"No runs recorded {where} yet. Every inference and every training run is measured and "
        "recorded here: classify or generate some text, caption an image or transcribe a clip to "
        "measure *using* a model; compare the approaches (calling an API, using as is, prompting with examples, three ways of training) "
        "on labelled data."
    )
    page_link("app_pages/text.py", "Text: use a pretrained model", ":material/text_fields:")
    page_link("app_pages/fine_tune.py", "Fine-tune: train and compare the approaches", ":material/model_training:")
    st.stop()

task = middle.selectbox("Task", [costs.ALL_TASKS, *sorted(stored["task"].unique())], key="summary_task")
if task != costs.ALL_TASKS:
    stored = stored[stored["task"] == task]
data = right.selectbox(
    "Data", [costs.ALL_DATA, *sorted(stored["data"].unique())], key="summary_data",
    help="Each run's data by name and the first characters of its SHA-256 fingerprint. "
    f"“{costs.PAGE_INPUT}”: text, images or audio given on a page, which are never stored.",
)
priced(version, session, task, data)

# --- download -----------------------------------------------------------------------------------
st.download_button(
    "Download these runs (CSV)",
    _csv(version, session, task, data),
    file_name="runs.csv",
    mime="text/csv",
    on_click="ignore",
    icon=":material/download:",
    key="summary_download",
)
st.caption("The CSV holds settings and measurements only: no prompt, text or upload is ever stored.")
