"""The "use before you train" guide of the Home page: three questions, and the recommendation with the page that
tests it. A decision table as plain functions, so the page only lays it out (and tests read it without a page)."""
from __future__ import annotations

from dataclasses import dataclass

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
class Link:
    """A link to a page: its file, its label, and the query parameters that open it at the right place."""

    page: str
    label: str
    query: dict[str, str]


# "Could a prompt fix the gap?" for labels of your own: the Fine-tune page, with its prompt arm ticked.
PROMPT_ARM = Link("app_pages/fine_tune.py", "Open Fine-tune: prompt with examples", {"arm": "prompt"})
PROMPTED_TASKS = ("Classify or generate text",)  # the prompt arm classifies text


@dataclass(frozen=True)
class Advice:
    """A recommendation of the guide.

    Attributes:
        verdict: what to do, in a few words.
        why: one or two sentences.
        page: the page file that tests it.
        title: that page's title.
        also: a second page to try, when there is one (the Fine-tune page's prompt arm for a prompt fix).
    """

    verdict: str
    why: str
    page: str
    title: str
    also: Link | None = None


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
    prompt_arm = PROMPT_ARM if task in PROMPTED_TASKS else None
    measured = (" For labels of your own, the Fine-tune page's \"prompt with examples\" arm measures what a few "
                "labelled examples in a prompt buy, against training a head on the same examples, on the same "
                "held-out split.") if prompt_arm else ""
    if fixable == YES:
        labels = (" For labels of your own, the Fine-tune page's \"call an API\" arm scores a hosted model prompted "
                  "with your label names against training.")
        if prompt_arm:
            labels = (" For labels of your own, the Fine-tune page scores a prompt against training on the same "
                      "held-out split: its \"prompt with examples\" arm puts a few of your labelled examples in a "
                      "language model's prompt, and its \"call an API\" arm asks a hosted model with your label names.")
        return Advice("Use it, with a prompt, wrapper or UI", "Change what goes in (a prompt, zero-shot labels, "
                      "pre-processing) or what comes out (a threshold, post-processing, a person checking in "
                      f"the UI): minutes of work, no training run. Try it on the {title} page.{labels}", page, title,
                      prompt_arm)
    if fixable == UNSURE:
        return Advice("Try a prompt or wrapper first", f"It is the cheapest fix to test, on the {title} page. If "
                      f"the gap stays, measure what training buys on the Fine-tune page.{measured}", page, title,
                      prompt_arm)
    if fixable == NO:
        return train("Adapt it: transfer learning, then fine-tuning", "Train a small head on the model's frozen "
                     "features first and fine-tune only if that falls short; the Fine-tune page compares both "
                     "with the model as is and with training from scratch, on your labelled data.")
    return None
