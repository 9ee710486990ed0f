"""Drawing generated images (here or hosted) and digits, and what the Image generation page says when a model
cannot load here."""
from __future__ import annotations

import streamlit as st

from core import imagegen, registry
from core.catalog import ModelSpec
from core.config import get_settings
from ui.common import show_measurement
from ui.hosted import LOCAL
from ui.run_on import View


def load_text_to_image(key: str, request: imagegen.ImageRequest) -> tuple[registry.Loaded, registry.Loaded | None]:
    """The pipeline and, when the request asks for the tiny decoder and the model has none, the decoder."""
    loaded = registry.load(key)
    tiny = imagegen.needs_tiny_decoder(loaded, request)
    return loaded, registry.load(imagegen.TINY_DECODER_KEY) if tiny else None


def _cancelled(result) -> bool:
    if result.cancelled:
        st.info(f"Cancelled after step {result.steps_done}; nothing was decoded.", icon=":material/cancel:")
    return result.cancelled


def show_image(result: imagegen.ImageResult, view: View) -> None:
    """One generated image, its download (the PNG with its settings here, the bytes as sent hosted) and its card."""
    if not _cancelled(result):
        image = result.image
        if view.side == LOCAL:
            caption, label = f"{result.parameters['model']} · seed {result.request.seed}", "Download PNG (settings in its metadata)"
        else:
            caption, label = f"{result.measurement.model} · {image.width}x{image.height}", "Download the image as sent"
        st.image(image, caption=caption, width=min(image.width, 900), output_format="PNG")  # no JPEG blur
        data, extension, mime = result.download()
        stem = view.key.removesuffix("_result")
        st.download_button(label, data, file_name=f"{stem}.{extension}", mime=mime, key=f"{stem}_download",
                           on_click="ignore")
    show_measurement(result.measurement, view.narrow)


def show_digits(result: imagegen.DigitsResult, view: View) -> None:
    """The grid of drawn digits, its download, card and quality line."""
    if not _cancelled(result):
        st.image(result.grid, caption=f"digit {result.parameters['digit']} · 16×16 px each, shown enlarged",
                 width=min(result.grid.size[0], 900), output_format="PNG")
        st.download_button("Download PNG (settings in its metadata)", result.png(), file_name="digits.png",
                           mime="image/png", key="digits_download", on_click="ignore")
    show_measurement(result.measurement, view.narrow)
    if result.readable is not None:
        st.caption(f"**Quality of this draw:** {result.readable:.0%} of the {result.parameters['images']} images read as "
                   f"a {result.parameters['digit']} to a classifier trained on the real digits (Summary charts it "
                   "as this run's impact).")


def offline_warning(spec: ModelSpec, digits_mode: str) -> None:
    """Why a text-to-image model cannot run here, how to get it, and a button to the digits generator."""
    why = ("this server runs in offline mode (UBT_OFFLINE or HF_HUB_OFFLINE)" if get_settings().offline
           else "this server cannot reach huggingface.co")
    st.warning(
        f"**{spec.title} cannot run here.** Its weights (`{spec.hub_id}`, about {spec.size_mb / 1000:.1f} GB) come "
        f"from the Hugging Face Hub, {why}, and no copy is on this disk. No PyPI package ships text-to-image weights.\n\n"
        f"**To use it:** {registry.how_to_get(spec)} Or run it on a **Hosted API** (Run on, above).\n\n"
        "**Works offline now:** the digits generator this project trained itself.",
        icon=":material/cloud_off:",
    )
    st.button("Use the digits generator", key="imagegen_use_digits", on_click=st.session_state.__setitem__,
              args=("imagegen_mode", digits_mode))
