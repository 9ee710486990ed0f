"""Home: the idea on one screen, and the "use before you train" guide that points to the page to try."""
from __future__ import annotations

import streamlit as st

from core.guide import NO, TASKS, UNSURE, UNTESTED, YES, advise
from ui.common import page_link

# --- the idea -----------------------------------------------------------------------------------
st.title("Use before you train")
st.markdown(
    "**Most problems already have a model.** Using a pretrained one costs a download and a fraction "
    "of a second per input; training one costs labelled data, compute time and memory. Here you can "
    "feel the difference on your own inputs: every load time, latency, memory peak, accuracy and "
    "dollar on these pages is measured on this machine, as you click."
)
use, adapt, train = st.columns(3)
with use.container(border=True):
    st.markdown("#### :material/play_arrow: Use")
    st.caption("Run a pretrained model as is on text, images, speech or image generation. "
               "Load it once, then milliseconds to seconds per input.")
with adapt.container(border=True):
    st.markdown("#### :material/build: Adapt")
    st.caption("Prompt it, wrap it, or train a small head on its frozen features. "
               "A few hundred labelled examples and seconds of training.")
with train.container(border=True):
    st.markdown("#### :material/model_training: Train")
    st.caption("Fine-tune it or train from scratch. More examples, minutes to hours, more memory: "
               "worth it when using and adapting fall short.")
page_link("app_pages/summary.py", "Summary: effort against impact for every run measured here", ":material/monitoring:")

# --- the guide ----------------------------------------------------------------------------------
@st.fragment
def guide() -> None:
    """The three questions and the recommendation: an answer reruns only this section, not the page and sidebar."""
    task = st.selectbox("What do you want to do?", list(TASKS), key="guide_task")
    has_model = st.segmented_control(
        "1. Is there a model already for your task?", [YES, NO, UNSURE], key="guide_model",
        help="A pretrained model on the Hugging Face Hub, in a library, or behind an API.",
    )
    works = None
    if has_model == YES:
        works = st.segmented_control("2. Does it work on your input?", [YES, NO, UNTESTED], key="guide_works")
    fixable = None
    if works == NO:
        fixable = st.segmented_control(
            "3. Could a prompt, wrapper or UI fix the gap?", [YES, NO, UNSURE], key="guide_fix",
            help="A better prompt or label set, pre- or post-processing, or a person checking results in the UI.",
        )

    advice = advise(task, has_model, works, fixable)
    if advice is None:
        st.caption("Answer the questions to get a recommendation.")
    else:
        st.success(f"**{advice.verdict}.** {advice.why}", icon=":material/lightbulb:")
        page_link(advice.page, f"Open {advice.title}", ":material/arrow_forward:")
        if advice.also is not None:
            page_link(advice.also.page, advice.also.label, ":material/format_list_numbered:", advice.also.query)


st.subheader("Before you train: three questions")
guide()
