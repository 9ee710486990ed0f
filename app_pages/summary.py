"""Summary: effort (time, memory, $) against impact (quality) for every run measured here."""
from __future__ import annotations

import streamlit as st

from core import costs, generation, runs
from core.charts import summary as charts
from ui.common import page_link, session_id

SCOPES = ("this session", "everyone on this server")
ALL_TASKS = "all tasks"
ALL_DATA = "all data"
MEMORY_NOTE = (
    "**Memory added**: the most one run added, i.e. its peak minus what the server held before it, plus the "
    "model's own size when the run loaded it. **Process peak**: the whole server at its highest during a run, "
    "with every model other runs left loaded: not what the approach needs. A dash: not measured (runs recorded "
    "before this figure existed)."
)


def show_table(frame, formats: dict[str, str]) -> None:
    """A static table: its columns wrap to the page width instead of scrolling out of sight."""
    st.table(frame.style.format(formats, na_rep="—"), hide_index=True)


st.title("Summary: effort against impact")
st.caption("Every figure below was measured on this server, by the runs people made on the other pages.")

# --- filters ------------------------------------------------------------------------------------
left, middle, right = st.columns(3)
scope = left.segmented_control(
    "Runs from", SCOPES, default=SCOPES[1], required=True, key="summary_scope"
)
stored = runs.fetch_runs(session_id=session_id() if scope == SCOPES[0] else None)
if note := runs.store_status():
    st.info(note, icon=":material/database:")

# --- empty store: how to fill it ----------------------------------------------------------------
if stored.empty:
    where = "in this session" if scope == SCOPES[0] else "on this server"
    st.info(
        f"No runs recorded {where} yet. Every inference and every training run is measured and "
        "recorded here: classify or generate some text, caption an image or transcribe a clip to "
        "measure *using* a model; compare the approaches (calling an API, using as is, three ways of training) on labelled data."
    )
    page_link("app_pages/text.py", "Text: use a pretrained model", ":material/text_fields:")
    page_link("app_pages/fine_tune.py", "Fine-tune: train and compare the approaches", ":material/model_training:")
    st.stop()

tasks = middle.selectbox("Task", [ALL_TASKS, *sorted(stored["task"].unique())], key="summary_task")
if tasks != ALL_TASKS:
    stored = stored[stored["task"] == tasks]

# --- cost model ---------------------------------------------------------------------------------
with st.expander("Cost model (assumptions you can edit)", icon=":material/payments:"):
    st.markdown(
        "A run costs its **compute seconds** (model load + run time) ÷ 3600 × the **hourly price** of "
        "the host it ran on, in US dollars. CPU runs are priced as a small CPU host, runs on a GPU "
        "as a one-GPU host. The defaults are rough on-demand prices, not quotes; idle time, storage "
        "and network are not counted."
    )
    cpu_col, gpu_col = st.columns(2)
    defaults = costs.Rates()
    rates = costs.Rates(
        cpu_usd_per_h=cpu_col.number_input(
            "CPU host ($/h)", min_value=0.0, value=defaults.cpu_usd_per_h, step=0.05, format="%.2f", key="rate_cpu"
        ),
        gpu_usd_per_h=gpu_col.number_input(
            "GPU host ($/h)", min_value=0.0, value=defaults.gpu_usd_per_h, step=0.10, format="%.2f", key="rate_gpu"
        ),
    )
enriched = costs.enrich(stored, rates)
data = right.selectbox(
    "Data", [ALL_DATA, *sorted(enriched["data"].unique())], key="summary_data",
    help="Each run's data by name and the first characters of its SHA-256 fingerprint. "
    f"“{costs.PAGE_INPUT}”: text, images or audio given on a page, which are never stored.",
)
if data != ALL_DATA:
    enriched = enriched[enriched["data"] == data]
    stored = stored.loc[enriched.index]

# --- effort against impact ----------------------------------------------------------------------
st.subheader("Effort against impact")
unit = st.segmented_control(
    "Effort in", list(charts.EFFORTS), default="seconds", required=True, key="summary_effort"
)
scored = int(enriched["impact"].notna().sum())
if scored:
    st.altair_chart(charts.effort_impact_chart(enriched, unit), width="stretch")
    st.caption(
        f"{scored} of {len(enriched)} runs have a quality figure (macro-F1, else accuracy, on a "
        "held-out split); plain inference runs have none and appear in the latency chart below."
    )
else:
    st.info(
        "None of these runs has a quality figure yet: quality is measured on the Fine-tune page, "
        "which scores every approach on the same held-out split."
    )
    page_link("app_pages/fine_tune.py", "Fine-tune: measure quality per approach", ":material/model_training:")

if (enriched["kind"] == "inference").any():
    st.altair_chart(charts.latency_chart(enriched), width="stretch")

# --- the chapter's two tables, measured ---------------------------------------------------------
st.subheader("Training considerations")
st.caption("Per approach. Using a model as is needs no training: its time, cost and data are 0.")
show_table(costs.training_table(enriched), {
    "median training time (s)": "{:.2f}", "median training cost ($)": "{:.5f}", "memory added (MB)": "{:,.0f}",
    "process peak (MB)": "{:,.0f}", "data needed (examples)": "{:,.0f}", "best accuracy": "{:.3f}",
    "best macro-F1": "{:.3f}",
})
if scratch := generation.digits_training_record():
    st.caption(
        f"**Train-from-scratch reference:** the digits generator on the Image generation page "
        f"({scratch['parameters']:,} parameters) was trained by this project for {scratch['train_seconds']:.0f} s "
        f"({scratch['steps']} steps, {scratch['hardware']}), "
        f"${costs.cost_usd(scratch['train_seconds'], 'cpu', rates):.4f} at the CPU rate; "
        f"{scratch['sample_accuracy']:.0%} of its samples are read as the requested digit."
    )

st.subheader("Inference considerations")
st.caption("Per family, model and device. Load time is the median over cold starts; cost prices the median latency.")
show_table(costs.inference_table(enriched, rates), {
    "median load time (s)": "{:.2f}", "median latency (s)": "{:.3f}", "memory added (MB)": "{:,.0f}",
    "process peak (MB)": "{:,.0f}", "$ per 1,000 calls": "{:.4f}",
})
st.caption(MEMORY_NOTE)

# --- download -----------------------------------------------------------------------------------
st.download_button(
    "Download these runs (CSV)",
    runs.to_csv(stored),
    file_name="runs.csv",
    mime="text/csv",
    on_click="ignore",
    icon=":material/download:",
    key="summary_download",
)
st.caption("The CSV holds settings and measurements only: no prompt, text or upload is ever stored.")
