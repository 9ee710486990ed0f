"""Text page: sentiment classification and streamed text generation, measured."""
import streamlit as st

from functools import partial

from core import engines, providers, registry, text, textgen
from core.engines import generate
from ui.common import friendly_errors, record, show_measurement
from ui.hosted import HOSTED, LOCAL, hosted_endpoint, where_picker
from ui.queue import model_turn
from ui.run_on import Here, RunOn, There, View
from ui.sidebar import model_picker, refresh_sidebar

SENTIMENT_EXAMPLES = {
    "Happy": "I love this movie, the cast is wonderful.",
    "Unhappy": "This was a waste of money; it broke after two days.",
    "Mixed": "The food was cold but the staff were lovely.",
    "Several lines": "Great battery life!\nThe screen scratches far too easily.\nDelivery was on time.\nNever buying from them again.",
    "Emoji & other scripts": "Best concert ever 🎉🔥\nこの映画は素晴らしかった\nОбслуживание было ужасным",
}


def _fill(key: str, value: str, lines_key: str | None) -> None:
    st.session_state[key] = value
    if lines_key:  # an example of several lines is meant one text per line
        st.session_state[lines_key] = "\n" in value


def _examples(examples: dict[str, str], target: str, key: str, lines_key: str | None = None) -> None:
    cols = st.columns(len(examples))
    for col, (name, value) in zip(cols, examples.items()):
        col.button(name, key=f"{key}_{name}", on_click=_fill, args=(target, value, lines_key), width="stretch")


st.title("Text: use a pretrained model")
st.caption(
    "Everything here is inference: the weights stay as they are. Each result shows where the model came "
    "from, how long loading and answering took, and the memory used, measured on this server."
)
sentiment_tab, generation_tab = st.tabs(["Sentiment", "Generation"])


SENTIMENT_LABELS = ("positive", "negative")


def _show_sentiment(result: text.ClassificationResult, view: View) -> None:
    if len(result.predictions) == 1:
        best = result.predictions[0]
        score = "" if best.score is None else f"score {best.score:.3f}"
        st.metric("Label", (best.label or "no label").capitalize(), score or None, delta_color="off", delta_arrow="off")
    else:
        st.dataframe([{"text": p.text, "label": p.label or "(no label)"}
                      | ({} if p.score is None else {"score": round(p.score, 4)}) for p in result.predictions],
                     width="stretch", hide_index=True)
    show_measurement(result.measurement, view.narrow)
    comparison = getattr(result, "compared", None)
    if comparison is not None:
        st.caption(
            f"**int8 against float32 on these texts:** {comparison.speedup:.2f}× the speed "
            f"({comparison.int8.measurement.latency_s * 1000:.0f} ms vs {comparison.float32.measurement.latency_s * 1000:.0f} ms); "
            f"labels agree on {comparison.agreement:.0%}; scores move by at most {comparison.max_score_change:.3f}."
        )


# --- sentiment (a fragment: its clicks rerun this section only, not the page and its sidebar) -------
@st.fragment
def sentiment_section() -> None:
    spec = model_picker("Sentiment model", task="sentiment", key="sentiment_model")
    if spec.key == "minilm-sentiment":
        record_note = text.sentiment_head_record()
        st.caption(
            f"A logistic-regression head trained by this project on {record_note.get('examples', '?')} labelled "
            f"sentences (assets/sentiment.csv); held-out accuracy {record_note.get('held_out_accuracy', 0):.0%}. "
            "English only."
        )
    c1, c2 = st.columns(2)
    many = c1.toggle("One text per line (batch)", key="sentiment_many")
    int8 = c2.toggle(
        "int8 quantised (CPU)", key="sentiment_int8",
        help="Dynamic int8 quantisation of the linear layers. The float model runs on the same texts too, "
        "so you see the speed-up and how much the answers move.",
    )
    _examples(SENTIMENT_EXAMPLES, "sentiment_text", "sentiment_example", lines_key="sentiment_many")
    st.text_area("Text", key="sentiment_text", height=140, placeholder="Type or paste text, or pick an example above.")
    where = where_picker("sentiment_where")
    point = hosted_endpoint(where, "Hosted endpoint (a chat model, asked for “positive” or “negative”)",
                            providers.CHAT, "chat", "sentiment_hosted")
    clicked = st.button("Classify", type="primary", key="sentiment_run", disabled=where != LOCAL and point is None)
    flow = RunOn("sentiment", where, "text", "sentiment", "Classification")
    if clicked:
        with friendly_errors("Classification"):
            prepared = text.prepare_texts(st.session_state.get("sentiment_text", ""), many=many)
            here = Here(load=partial(engines.load_int8_pair if int8 else engines.load_sentiment, spec.key),
                        run=partial(text.classify_int8 if int8 else text.classify, texts=prepared.texts),
                        turn="classify", busy=f"Running {spec.title} ...")
            there = point and There(point, partial(providers.classify, texts=prepared.texts, labels=list(SENTIMENT_LABELS)),
                                    f"{len(prepared.texts)} call{'s' if len(prepared.texts) != 1 else ''}")
            flow.run(here, there, notes=prepared.notes, params={"texts": len(prepared.texts)}, local_params={"int8": int8})
    flow.show(_show_sentiment)
    refresh_sidebar()  # this section's own runs leave the sidebar's memory figures as they were


# --- generation (a fragment too) ------------------------------------------------------------------
def _engine_title(name: str, auto: engines.EngineChoice | None) -> str:
    if name != engines.AUTO:
        return engines.ENGINES[name].title
    return f"Auto: {engines.ENGINES[auto.engine].title}" if auto else "Auto"


def _engine_picker(spec) -> engines.EngineChoice | None:
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


def _show_generation(result, view: View) -> None:
    if not view.streamed:
        st.markdown(result.text or "_(the model stopped at once: no new text)_")
    show_measurement(result.measurement, view.narrow)


@st.fragment
def generation_section() -> None:
    spec = model_picker("Generation model", task="generation", key="generation_model")
    _examples(textgen.PROMPT_EXAMPLES, "generation_prompt", "generation_example")
    st.session_state.setdefault("generation_prompt", next(iter(textgen.PROMPT_EXAMPLES.values())))  # a first Generate works
    st.text_area("Prompt", key="generation_prompt", height=110, placeholder="Type a prompt, or pick an example above.")
    c1, c2, c3 = st.columns(3)
    c4, c5, c6 = st.columns(3)
    settings = textgen.GenerationSettings(
        max_new_tokens=c1.slider("Max new tokens", 1, 256, 64, key="generation_max_new_tokens"),
        temperature=c2.slider("Temperature (0 = greedy)", 0.0, 1.5, 0.7, 0.05, key="generation_temperature"),
        top_p=c3.slider("Top-p", 0.05, 1.0, 0.9, 0.05, key="generation_top_p"),
        repetition_penalty=c4.slider(
            "Repetition penalty (1 = off)", 1.0, 2.0, textgen.REPETITION_PENALTY, 0.05, key="generation_repetition_penalty",
            help="Makes every token already in the prompt or the answer less likely again.",
        ),
        no_repeat_ngram_size=c5.slider(
            "No repeated run of n tokens (0 = off)", 0, 10, textgen.NO_REPEAT_NGRAM_SIZE, key="generation_no_repeat_ngram",
            help="Forbids any run of this many tokens from appearing twice, so a phrase cannot loop.",
        ),
        seed=int(c6.number_input("Seed", 0, 2**31 - 1, 0, key="generation_seed")),
    )
    where = where_picker("generation_where")
    choice = _engine_picker(spec) if where != HOSTED else None
    point = hosted_endpoint(where, "Hosted endpoint", providers.CHAT, "chat", "generation_hosted")
    clicked = st.button("Generate", type="primary", key="generation_run", disabled=where != LOCAL and point is None)
    flow = RunOn("generation", where, "text", "generation", "Generation")
    if clicked:
        with friendly_errors("Generation"):
            prompt = text.prepare_texts(st.session_state.get("generation_prompt", ""))
            engine = choice.engine if choice else engines.TORCH
            first_use = engines.needs_preparation(spec.key, engine)
            here = Here(load=partial(engines.load, spec.key, engine), turn="generate",
                        run=partial(generate.EngineStream, prompt=prompt.texts[0], settings=settings), stream=True,
                        busy=f"Loading {spec.title} on {engines.ENGINES[engine].title} ...",
                        first_use="" if not first_use else f"First use: preparing {spec.title} for {engines.ENGINES[engine].title}, "
                        "once per machine (up to a minute)")
            there = point and There(point, partial(providers.ChatStream, prompt=prompt.texts[0], max_tokens=settings.max_new_tokens,
                                                   temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed),
                                    "streaming", stream=True)
            flow.run(here, there, notes=prompt.notes, params={
                "max_new_tokens": settings.max_new_tokens, "temperature": settings.temperature}, local_params={
                "engine": engine, "top_p": settings.top_p, "seed": settings.seed,
                "repetition_penalty": settings.repetition_penalty, "no_repeat_ngram_size": settings.no_repeat_ngram_size})
    flow.show(_show_generation)
    _compare_engines(spec, settings)
    refresh_sidebar()  # this section's own runs leave the sidebar's memory figures as they were


def _compare_engines(spec, settings) -> None:
    """The same prompt and settings on every engine that can run this model here, side by side with PyTorch."""
    with st.expander("Compare engines on this prompt (same weights: PyTorch, CTranslate2 int8, llama.cpp)"):
        st.caption("Each engine installed here runs the prompt with the settings above, for exactly the same number of "
                   "new tokens (none stops early at end-of-text). With temperature 0 (greedy), "
                   "each is also checked against PyTorch float32: the first token that differs, and how often it "
                   "predicts PyTorch's next token.")
        if st.button("Compare engines", key="generation_compare_engines"):
            st.session_state.pop("generation_engines", None)
            with friendly_errors("Engine comparison"), model_turn("generate"), st.spinner("Running the prompt on each engine ..."):
                prepared = text.prepare_texts(st.session_state.get("generation_prompt", ""))
                names = engines.generation_engines(registry.resolve(spec))
                comparison = generate.compare(spec.key, prepared.texts[0], settings, names)
                st.session_state["generation_engines"] = generate.comparison_rows(comparison)
                for name, result in comparison.results.items():
                    record(result.measurement, "text", "generation", {"engine": name, "max_new_tokens": settings.max_new_tokens,
                                                                        "temperature": settings.temperature})
        rows = st.session_state.get("generation_engines")
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch", column_config={
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
                    width="small",
                    format="percent", help="Greedy runs only: how often the engine predicts PyTorch float32's next "
                    "token on PyTorch's own answer (teacher-forced)."),
            })


with sentiment_tab:
    sentiment_section()
with generation_tab:
    generation_section()
