"""Drawing text results (sentiment and generation, here or hosted), the generation engine picker and the engine
comparison table."""
from __future__ import annotations

import streamlit as st

from core import engines, registry, text, textgen
from core.engines import generate
from ui.common import friendly_errors, record, show_measurement
from ui.queue import model_turn
from ui.run_on import View


def show_sentiment(result: text.ClassificationResult, view: View) -> None:
    """One label as a metric, or a table of texts and labels; the card; the int8 comparison when it ran."""
    if len(result.predictions) == 1:
        best = result.predictions[0]
        score = "" if best.score is None else f"score {best.score:.3f}"
        st.metric("Label", (best.label or "no label").capitalize(), score or None, delta_color="off", delta_arrow="off")
    else:
        st.dataframe([{"text": p.text, "label": p.label or "(no label)"}
                      | ({} if p.score is None else {"score": round(p.score, 4)}) for p in result.predictions],
                     width="stretch", hide_index=True)
    show_measurement(result.measurement, view.narrow)
    comparison = result.compared
    if comparison is not None:
        st.caption(
            f"**int8 against float32 on these texts:** {comparison.speedup:.2f}× the speed "
            f"({comparison.int8.measurement.latency_s * 1000:.0f} ms vs {comparison.float32.measurement.latency_s * 1000:.0f} ms); "
            f"labels agree on {comparison.agreement:.0%}; scores move by at most {comparison.max_score_change:.3f}."
        )


def show_generation(result: textgen.GenerationResult, view: View) -> None:
    """The generated text (unless it was just streamed into the page) and the card."""
    if not view.streamed:
        st.markdown(result.text or "_(the model stopped at once: no new text)_")
    show_measurement(result.measurement, view.narrow)


def _engine_title(name: str, auto: engines.EngineChoice | None) -> str:
    if name != engines.AUTO:
        return engines.ENGINES[name].title
    return f"Auto: {engines.ENGINES[auto.engine].title}" if auto else "Auto"


def engine_picker(spec) -> engines.EngineChoice | None:
    """The Engine selectbox (Auto, or each engine that can run this model here) and a line saying what runs and why."""
    resolution = registry.availability(spec).resolution
    auto = engines.choose_generation_engine(resolution) if resolution else None
    options = [engines.AUTO] + (engines.generation_engines(resolution) if resolution else [])
    column, _ = st.columns([1, 2])
    wanted = column.selectbox(
        "Engine", options, key="generation_engine", format_func=lambda name: _engine_title(name, auto),
        help="What runs the model: the same weights on llama.cpp, CTranslate2 int8 or plain PyTorch. "
        "Auto picks the fastest one installed here; PyTorch float32 is the reference the others are compared with.",
    )
    if resolution is None:
        return None
    choice = engines.choose_generation_engine(resolution, wanted or engines.AUTO)
    st.caption(engines.explain(choice, wanted or engines.AUTO))
    return choice


COMPARISON_COLUMNS = {
    "engine": st.column_config.TextColumn(width="medium"),
    "tokens/s": st.column_config.NumberColumn(format="%.1f", width="small"),
    "first token (s)": st.column_config.NumberColumn(
        format="%.2f", width="small", help="From the start of the generation, the model already loaded."),
    "load (s)": st.column_config.TextColumn(
        width="small", help="First use on this server only: loading, with any one-time conversion of the "
        "weights (once per machine); cached: already in memory."),
    "memory (MB)": st.column_config.NumberColumn(format="%.0f", width="small", help="Memory the run added."),
    "new tokens": st.column_config.NumberColumn(width="small"),
    "differs at token": st.column_config.TextColumn(
        width="small", help="Greedy runs only: the first token that differs from PyTorch float32."),
    "agreement": st.column_config.NumberColumn(
        width="small", format="percent", help="Greedy runs only: how often the engine predicts PyTorch float32's next "
        "token on PyTorch's own answer (teacher-forced)."),
}


def compare_engines(spec, prompt: str, settings: textgen.GenerationSettings) -> None:
    """The same prompt and settings on every engine that can run this model here, side by side with PyTorch."""
    with st.expander("Compare engines on this prompt (same weights: PyTorch, CTranslate2 int8, llama.cpp)"):
        st.caption("Each engine installed here runs the prompt with the settings above, for exactly the same number of "
                   "new tokens (none stops early at end-of-text). With temperature 0 (greedy), "
                   "each is also checked against PyTorch float32: the first token that differs, and how often it "
                   "predicts PyTorch's next token.")
        if st.button("Compare engines", key="generation_compare_engines"):
            st.session_state.pop("generation_engines", None)
            with friendly_errors("Engine comparison"), model_turn("generate"), st.spinner("Running the prompt on each engine ..."):
                prepared = text.prepare_texts(prompt)
                names = engines.generation_engines(registry.resolve(spec))
                comparison = generate.compare(spec.key, prepared.texts[0], settings, names)
                st.session_state["generation_engines"] = generate.comparison_rows(comparison)
                for name, result in comparison.results.items():
                    record(result.measurement, "text", "generation", {"engine": name, "max_new_tokens": settings.max_new_tokens,
                                                                        "temperature": settings.temperature})
        rows = st.session_state.get("generation_engines")
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch", column_config=COMPARISON_COLUMNS)
