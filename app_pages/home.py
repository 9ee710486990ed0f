"""Home: the idea on one screen, and the "use before you train" guide that points to the page to try."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ui.common import page_link

# What people want to do -> the page that tries pretrained models for it, and its title.
TASKS = {
    "Classify or generate text": ("app_pages/text.py", "Text"),
    "Label or caption images": ("app_pages/image_text.py", "Image-text"),
    "Transcribe speech": ("app_pages/speech.py", "Speech"),
    "Generate images from text": ("app_pages/image_generation.py", "Image generation"),
}
FINE_TUNE = ("app_pages/fine_tune.py", "Fine-tune")
# Tasks the Fine-tune page does not train: what training would mean for them, and what this app offers instead.
NOT_TRAINED_HERE = {
    "Transcribe speech": "Training speech recognition means fine-tuning Whisper on hours of your own transcribed "
                         "audio, usually on a GPU; this app does not train speech models. Before that, the Speech "
                         "page compares Whisper sizes and two backends on your clips (word error rate against a known "
                         "text), and a fixed language or a larger model often closes the gap.",
    "Generate images from text": "Training image generation means fine-tuning a diffusion model (DreamBooth, LoRA) "
                                 "on tens of your images, on a GPU; this app does not fine-tune those. The Image "
                                 "generation page shows what training from scratch takes on a small scale: a digits "
                                 "generator this project trains itself, beside the pretrained models.",
}
YES, NO, UNSURE, UNTESTED = "Yes", "No", "Not sure", "Not tested yet"


@dataclass(frozen=True)
class Advice:
    """A recommendation of the guide.

    Attributes:
        verdict: what to do, in a few words.
        why: one or two sentences.
        page: the page file that tests it.
        title: that page's title.
    """

    verdict: str
    why: str
    page: str
    title: str


def advise(task: str, has_model: str | None, works: str | None, fixable: str | None) -> Advice | None:
    """Turn the guide's answers into a recommendation.

    Args:
        task: a key of ``TASKS``.
        has_model: answer to "is there a model already for my task?" (None: not answered).
        works: answer to "does it work on my input?".
        fixable: answer to "could a prompt, wrapper or UI fix the gap?".

    Returns:
        The advice, or None while an answer it needs is missing.
    """
    page, title = TASKS[task]

    def train(verdict: str, why: str) -> Advice:
        """Training advice: the Fine-tune page, or, for a task it does not train, what training would mean."""
        if task in NOT_TRAINED_HERE:
            return Advice(verdict, NOT_TRAINED_HERE[task], page, title)
        return Advice(verdict, why, *FINE_TUNE)

    if has_model == UNSURE:
        return Advice("Look before you build", f"Try the pretrained models on the {title} page with your own "
                      "input: checking takes minutes, training takes days.", page, title)
    if has_model == NO:
        return train("Train, starting from what exists", "No model does your task, so training is justified. "
                     "Start with a small head on a pretrained encoder's frozen features and compare it with "
                     "fine-tuning and training from scratch: the Fine-tune page shows what each approach buys "
                     "per labelled example and per second of compute.")
    if has_model != YES or works is None:
        return None
    if works == YES:
        return Advice("Use it as is: call an API, or run it yourself", f"It exists and it works: no training "
                      "needed. Either call it (a hosted API: no machine to size, a price per call) or run it (load "
                      f"time, latency and memory on your machine). The {title} page measures both on your input, "
                      "and Summary prices them per 1,000 calls.", page, title)
    if works == UNTESTED:
        return Advice("Test it on your input first", f"Run it on a few of your own inputs on the {title} page "
                      "before deciding anything: most gaps show in the first ten examples.", page, title)
    if fixable == YES:
        return Advice("Use it, with a prompt, wrapper or UI", "Change what goes in (a prompt, zero-shot labels, "
                      "pre-processing) or what comes out (a threshold, post-processing, a person checking in "
                      f"the UI): minutes of work, no training run. Try it on the {title} page; for labels of your own, "
                      "the Fine-tune page's \"call an API\" arm scores a hosted model prompted with your label "
                      "names against training.", page, title)
    if fixable == UNSURE:
        return Advice("Try a prompt or wrapper first", f"It is the cheapest fix to test, on the {title} page. If "
                      "the gap stays, measure what training buys on the Fine-tune page.", page, title)
    if fixable == NO:
        return train("Adapt it: transfer learning, then fine-tuning", "Train a small head on the model's frozen "
                     "features first and fine-tune only if that falls short; the Fine-tune page compares both "
                     "with the model as is and with training from scratch, on your labelled data.")
    return None


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


st.subheader("Before you train: three questions")
guide()
