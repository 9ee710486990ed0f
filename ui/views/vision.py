"""Drawing image-text results, here or hosted: zero-shot labels (with CLIP's probabilities where there are some)
and captions, each over the images they were run on (:attr:`ui.run_on.View.kept`: (name, image) pairs)."""
from __future__ import annotations

import streamlit as st

from core import vision
from core.charts.vision import label_probabilities_chart, probability_heatmap
from ui.common import show_measurement
from ui.hosted import LOCAL, comparison
from ui.run_on import View
from ui.widgets import grid, plain


def show_image(decoded) -> None:
    """One decoded input image, named, with its size."""
    st.image(decoded.image, caption=f"{decoded.name} · {decoded.image.width}x{decoded.image.height}", width="stretch")


def _labelled(cell) -> None:
    (_, image), (label, probability) = cell
    st.image(image, width="stretch")
    if probability is not None:
        st.markdown(f"**{plain(label)}** · {probability:.0%}")
    else:  # a hosted chat model names one label, without a probability
        st.markdown(f"**{plain(label)}**" if label else "_(the answer named no label)_")


def _captioned(cell) -> None:
    (_, image), text = cell
    st.image(image, width="stretch")
    st.markdown(f"**{plain(text)}**")


def _share(result, name: str) -> str:
    m = result.measurement
    return f"{m.extra[name] / max(m.latency_s, 1e-9):.0%}"


def show_labels(result: vision.ZeroShotResult, view: View) -> None:
    """Each image with its top label; one image's whole distribution or a heatmap of all; the card."""
    shown = view.kept
    if result.probabilities is not None and len(shown) == 1:
        image_col, chart_col = st.columns([1, 2])
        image_col.image(shown[0][1], width="stretch")
        label, probability = result.top[0]
        chart_col.altair_chart(label_probabilities_chart(result.labels, result.probabilities[0],
                                                         f"Most likely: {label} ({probability:.0%})"), width="stretch")
    else:
        grid(list(zip(shown, result.top)), _labelled)
        if result.probabilities is not None:
            st.altair_chart(probability_heatmap([n for n, _ in shown], result.labels, result.probabilities),
                            width="stretch")
    show_measurement(result.measurement, view.narrow)
    if result.probabilities is None:
        st.caption("A chat model names one label per image: no probabilities, and a price per call.")
    else:
        st.caption(
            f"{len(shown)} image(s) in batches of up to {vision.CLIP_BATCH}. Preprocessing (resize, crop, normalise) took "
            f"{_share(result, 'preprocess_s')} of the latency; the rest is the model. "
            f"Prompts: {plain(', '.join(repr(p) for p in result.prompts[:3]))}{' ...' if len(result.prompts) > 3 else ''}"
        )


def compare_rates(here, there) -> None:
    """The one line comparing a local and a hosted run on the same images."""
    comparison(here.measurement, there.measurement, "images", here.measurement.extra["images_per_s"],
               there.measurement.extra["images_per_s"])


def compare_labels(here: vision.ZeroShotResult, there: vision.ZeroShotResult) -> None:
    """The rates, and on how many images the two named the same label."""
    compare_rates(here, there)
    agree = sum(a == b for (a, _), (b, _) in zip(there.top, here.top))
    st.caption(f"The two agree on {agree} of {len(here.top)} image(s).")


def show_captions(result: vision.CaptionResult, view: View) -> None:
    """Each image with its caption, and the card."""
    grid(list(zip(view.kept, result.captions)), _captioned)
    show_measurement(result.measurement, view.narrow)
    if view.side == LOCAL:
        st.caption(
            f"{len(view.kept)} image(s), up to {vision.CAPTION_BATCH} per generate call. Preprocessing took "
            f"{_share(result, 'preprocess_s')} of the latency; the rest is encoding the image and generating tokens one "
            "at a time."
        )
