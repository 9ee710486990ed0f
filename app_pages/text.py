"""Text page: sentiment classification and streamed text generation, measured."""
import streamlit as st

from functools import partial

from core import engines, providers, text, textgen
from core.engines import generate
from ui.common import friendly_errors
from ui.hosted import HOSTED, LOCAL, hosted_endpoint, where_picker
from ui.run_on import Here, RunOn, There
from ui.sidebar import model_picker, refresh_sidebar
from ui.views.text import compare_engines, engine_picker, show_generation, show_sentiment
from ui.widgets import example_buttons

SENTIMENT_EXAMPLES = {
    "Happy": "I love this movie, the cast is wonderful.",
    "Unhappy": "This was a waste of money; it broke after two days.",
    "Mixed": "The food was cold but the staff were lovely.",
    "Several lines": "Great battery life!\nThe screen scratches far too easily.\nDelivery was on time.\nNever buying from them again.",
    "Emoji & other scripts": "Best concert ever 🎉🔥\nこの映画は素晴らしかった\nОбслуживание было ужасным",
}
SENTIMENT_LABELS = ("positive", "negative")  # what a hosted chat model is asked to choose from

st.title("Text: use a pretrained model")
st.caption(
    "Everything here is inference: the weights stay as they are. Each result shows where the model came "
    "from, how long loading and answering took, and the memory used, measured on this server."
)
sentiment_tab, generation_tab = st.tabs(["Sentiment", "Generation"])


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
    example_buttons(SENTIMENT_EXAMPLES, "sentiment_text", "sentiment_example", lines_key="sentiment_many")
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
            there = point and There(point, partial(providers.classify_texts, texts=prepared.texts, labels=list(SENTIMENT_LABELS)),
                                    f"{len(prepared.texts)} call{'s' if len(prepared.texts) != 1 else ''}")
            flow.run(here, there, notes=prepared.notes, params={"texts": len(prepared.texts)}, local_params={"int8": int8})
    flow.show(show_sentiment)
    refresh_sidebar()  # this section's own runs leave the sidebar's memory figures as they were


# --- generation (a fragment too) ------------------------------------------------------------------
@st.fragment
def generation_section() -> None:
    spec = model_picker("Generation model", task="generation", key="generation_model")
    example_buttons(textgen.PROMPT_EXAMPLES, "generation_prompt", "generation_example")
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
    choice = engine_picker(spec) if where != HOSTED else None
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
    flow.show(show_generation)
    compare_engines(spec, st.session_state.get("generation_prompt", ""), settings)
    refresh_sidebar()  # this section's own runs leave the sidebar's memory figures as they were


with sentiment_tab:
    sentiment_section()
with generation_tab:
    generation_section()
