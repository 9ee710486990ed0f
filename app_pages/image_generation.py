"""Image generation page: text-to-image with a pretrained diffusion model (here, on a hosted API, or both side by
side), or digits from a model this project trained."""
import streamlit as st

from core import imagegen, providers, registry
from core.charts.generation import loss_curve_chart
from core.config import get_settings
from core.progress import Progress
from ui.common import friendly_errors, record, show_measurement
from ui.hosted import BOTH, HOSTED, LOCAL, comparison, hosted_endpoint, outputs, where_picker
from ui.hosted import call as hosted_call
from ui.queue import model_turn
from ui.sidebar import model_picker

MODES = ("Text to image (pretrained)", "Digits (trained by this project, offline)")
PROMPT_EXAMPLES = {
    "Fox": "a red fox in the snow, morning light, photo",
    "City": "a watercolour painting of a harbour city at dusk",
    "Robot": "a small friendly robot reading a book, studio lighting",
}


def _set(key: str, value) -> None:
    st.session_state[key] = value


def _progress(prefix: str, preview_width: int):
    """A progress bar and a preview slot; returns the step callback that fills them and the slot (to clear)."""
    slot = st.empty()
    box = slot.container()
    bar, preview = box.progress(0.0, text="Starting ..."), box.empty()

    def on_step(update: Progress) -> None:
        st.session_state[f"{prefix}_progress"] = (update.done, update.total)
        bar.progress(update.done / update.total, text=f"Step {update.done} of {update.total} · {update.elapsed_s:.1f} s")
        if update.preview is not None:
            preview.image(update.preview, caption="Preview of the current step (approximate)", width=preview_width)

    return on_step, slot


def _cancelled_note(prefix: str) -> None:
    """After Cancel: say where the run stopped (the click itself interrupts the running step loop)."""
    if st.session_state.get(f"{prefix}_cancel"):
        st.session_state[f"{prefix}_cancel"] = False
        step, total = st.session_state.pop(f"{prefix}_progress", (0, 0))
        if total:
            st.info(f"Cancelled after step {step} of {total}; nothing was decoded. Change the settings and generate "
                    "again.", icon=":material/cancel:")
        else:
            st.info("Nothing is running.", icon=":material/info:")


def _buttons(prefix: str, label: str, disabled: bool = False) -> bool:
    run, cancel, _ = st.columns([1, 1, 4])
    clicked = run.button(label, type="primary", key=f"{prefix}_run", on_click=_set, args=(f"{prefix}_cancel", False),
                         disabled=disabled)
    cancel.button("Cancel", key=f"{prefix}_cancel_button", on_click=_set, args=(f"{prefix}_cancel", True))
    return clicked


def _show_result(result, image, prefix: str, caption: str, narrow: bool = False) -> None:
    for note in result.notes:
        st.info(note, icon=":material/info:")
    if result.cancelled:
        st.info(f"Cancelled after step {result.steps_done}; nothing was decoded.", icon=":material/cancel:")
    else:
        st.image(image, caption=caption, width=min(image.size[0], 900), output_format="PNG")  # no JPEG blur
        st.download_button("Download PNG (settings in its metadata)", result.png(), file_name=f"{prefix}.png",
                           mime="image/png", key=f"{prefix}_download", on_click="ignore")
    show_measurement(result.measurement, narrow)


def _unavailable(spec) -> None:
    why = ("this server runs in offline mode (UBT_OFFLINE or HF_HUB_OFFLINE)" if get_settings().offline
           else "this server cannot reach huggingface.co")
    st.warning(
        f"**{spec.title} cannot run here.** Its weights (`{spec.hub_id}`, about {spec.size_mb / 1000:.1f} GB) come "
        f"from the Hugging Face Hub, {why}, and no copy is on this disk. No PyPI package ships text-to-image weights.\n\n"
        f"**To use it:** run the app on a machine with internet access (the weights download once and are cached), or "
        f"download the repository elsewhere (`hf download {spec.hub_id}`) and copy the folder to "
        f"`$UBT_MODEL_DIR/{spec.hub_id}`, or run it on a **Hosted API** (Run on, above).\n\n**Works offline now:** "
        "the digits generator this project trained itself.",
        icon=":material/cloud_off:",
    )
    st.button("Use the digits generator", key="imagegen_use_digits", on_click=_set, args=("imagegen_mode", MODES[1]))


st.title("Image generation")
st.caption(
    "Inference with a diffusion model: start from noise and remove a little of it at every step. Each result shows "
    "where the model came from, load time, seconds per step and per image, and peak memory, measured on this server."
)
mode = st.radio("Generator", MODES, key="imagegen_mode", horizontal=True)

# --- text to image: here, on a hosted API, or both ---------------------------------------------------
def _show_hosted(result: providers.HostedImage, narrow: bool) -> None:
    for note in result.notes:
        st.info(note, icon=":material/info:")
    st.image(result.image, caption=f"{result.measurement.model} · {result.image.width}x{result.image.height}",
             width=min(result.image.width, 900))
    extension = result.mime.split("/")[-1].replace("jpeg", "jpg")
    st.download_button("Download the image as sent", result.data, file_name=f"hosted.{extension}", mime=result.mime,
                       key="imagegen_hosted_download", on_click="ignore")
    show_measurement(result.measurement, narrow)


if mode == MODES[0]:
    where = where_picker("imagegen_where")
    spec = model_picker("Model", task="text-to-image", key="imagegen_model", family="image-generation") if where != HOSTED else None
    local_ok = spec is not None and registry.availability(spec).resolution is not None
    point = hosted_endpoint(where, "Hosted endpoint (OpenAI-compatible images, Hugging Face or Replicate)",
                            providers.IMAGE_KINDS, "images", "imagegen_hosted")
    if spec is not None and not local_ok:
        _unavailable(spec)
    if local_ok or where != LOCAL:
        if local_ok and (note := imagegen.budget_note(spec.key)):
            st.warning(note, icon=":material/memory:")
        guided = spec.options.get("guidance", 0.0) > 1.0 if local_ok else False
        cols = st.columns(len(PROMPT_EXAMPLES))
        for col, (name, value) in zip(cols, PROMPT_EXAMPLES.items()):
            col.button(name, key=f"imagegen_example_{name}", on_click=_set, args=("imagegen_prompt", value), width="stretch")
        st.text_area("Prompt", key="imagegen_prompt", height=90, placeholder="Describe the image, or pick an example above.")
        if guided:
            st.text_input("Negative prompt (what to avoid)", key="imagegen_negative")
        c1, c2, c3, c4 = st.columns(4)
        steps = c1.slider("Steps", 1, imagegen.MAX_STEPS, int(spec.options.get("steps", 1)) if local_ok else 4,
                          key="imagegen_steps")
        guidance = c2.slider("Guidance scale", 1.0, 12.0, float(spec.options.get("guidance", 7.5)), 0.5,
                             key="imagegen_guidance") if guided else 0.0
        width = c3.number_input("Width (px)", imagegen.MIN_SIZE, imagegen.MAX_SIZE, 512, 8, key="imagegen_width")
        height = c4.number_input("Height (px)", imagegen.MIN_SIZE, imagegen.MAX_SIZE, 512, 8, key="imagegen_height")
        c5, c6 = st.columns(2)
        seed = c5.number_input("Seed", 0, imagegen.MAX_SEED, 0, key="imagegen_seed")
        tiny = c6.toggle("Tiny decoder (TAESD): much faster decoding, slightly softer detail", key="imagegen_tiny",
                         disabled=not local_ok)
        clicked = _buttons("imagegen", "Generate", disabled=where != LOCAL and point is None)
        _cancelled_note("imagegen")
        local_out, hosted_out = outputs(where)
        if where == BOTH and not local_ok:
            local_out.caption(f"Not run: {spec.title} cannot load on this server (see above).")
        if clicked:
            st.session_state.pop("imagegen_result", None)
            st.session_state.pop("imagegen_hosted_result", None)
            request = imagegen.ImageRequest(
                prompt=st.session_state.get("imagegen_prompt", ""), negative_prompt=st.session_state.get("imagegen_negative", ""),
                steps=steps, guidance_scale=guidance, width=int(width), height=int(height), seed=int(seed), tiny_decoder=tiny,
            )
            with friendly_errors("Image generation"):
                request, _ = imagegen.validate_request(request)  # a bad prompt or size is said once, before any call
                if local_ok:
                    with local_out:
                        on_step, progress = _progress("imagegen", 192)
                        with friendly_errors("Image generation"), model_turn("generate image"), st.spinner(f"Generating with {spec.title} (its first use loads it) ..."):
                            result = imagegen.generate_image(spec.key, request, on_step,
                                                               lambda: bool(st.session_state.get("imagegen_cancel")))
                            st.session_state["imagegen_result"] = result
                            record(result.measurement, "image-generation", "text-to-image", {
                                "steps": result.request.steps, "width": result.request.width, "height": result.request.height,
                                "guidance_scale": result.request.guidance_scale, "tiny_decoder": tiny, "cancelled": result.cancelled,
                            })
                        progress.empty()
                        st.session_state.pop("imagegen_progress", None)  # finished or failed; a Cancel click never gets here
                if point is not None:
                    with hosted_out:
                        hosted = hosted_call(point, "one image", providers.generate_image, request.prompt, request.width,
                                             request.height, request.seed, steps=request.steps,
                                             negative_prompt=request.negative_prompt)
                    if hosted is not None:
                        st.session_state["imagegen_hosted_result"] = hosted
                        record(hosted.measurement, "image-generation", "text-to-image", {
                            "width": request.width, "height": request.height, "seed": request.seed})
        result = st.session_state.get("imagegen_result")
        if result is not None and local_ok:
            with local_out:
                _show_result(result, result.image, "imagegen", f"{result.parameters['model']} · seed {result.request.seed}",
                             narrow=where == BOTH)
        hosted = st.session_state.get("imagegen_hosted_result")
        if hosted is not None and point is not None:
            with hosted_out:
                _show_hosted(hosted, narrow=where == BOTH)
        if where == BOTH and result is not None and hosted is not None and not result.cancelled:
            comparison(result.measurement, hosted.measurement, "images", 1 / max(result.measurement.latency_s, 1e-9),
                       hosted.measurement.extra["images_per_s"])

# --- digits, trained by this project ------------------------------------------------------------------
else:
    trained = imagegen.digits_training_record()
    if trained:
        st.caption(
            f"A {trained['parameters'] / 1e6:.2f}M-parameter class-conditional diffusion model (diffusers UNet2DModel) "
            f"that this project trained from scratch on scikit-learn's 1,797 handwritten digits: {trained['steps']:,} "
            f"steps in {trained['train_seconds']:,.0f} s on {trained['hardware']}. "
            f"{trained['sample_accuracy']:.0%} of its samples read as the requested digit to a simple classifier. "
            "It runs offline in a second or two."
        )
    st.radio("Digit", list(range(10)), key="digits_digit", horizontal=True)
    c1, c2, c3, c4 = st.columns(4)
    count = c1.slider("Images", 1, 32, 8, key="digits_count")
    steps = c2.slider("DDIM steps", 1, 100, 20, key="digits_steps")
    guidance = c3.slider("Guidance scale", 1.0, 5.0, 2.0, 0.5, key="digits_guidance",
                         help="1 = follow the class label only; higher = more typical digits, less variety.")
    seed = c4.number_input("Seed", 0, imagegen.MAX_SEED, 0, key="digits_seed")
    clicked = _buttons("digits", "Draw digits")
    _cancelled_note("digits")
    if clicked:
        st.session_state.pop("digits_result", None)
        on_step, progress = _progress("digits", 384)
        with friendly_errors("Digit generation"), model_turn("generate image"):
            result = imagegen.generate_digits(
                st.session_state.get("digits_digit", 0), count, steps, guidance, int(seed), on_step,
                lambda: bool(st.session_state.get("digits_cancel")),
            )
            st.session_state["digits_result"] = result
            record(result.measurement, "image-generation", "digits", {
                "digit": result.parameters["digit"], "images": count, "steps": steps, "guidance_scale": guidance,
                "cancelled": result.cancelled,
            }, None if result.readable is None else {"accuracy": result.readable})
        progress.empty()
        st.session_state.pop("digits_progress", None)  # finished or failed; a Cancel click never gets here
    result = st.session_state.get("digits_result")
    if result is not None:
        _show_result(result, result.grid, "digits", f"digit {result.parameters['digit']} · 16×16 px each, shown enlarged")
        if result.readable is not None:
            st.caption(f"**Quality of this draw:** {result.readable:.0%} of the {result.parameters['images']} images read as "
                       f"a {result.parameters['digit']} to a classifier trained on the real digits (Summary charts it "
                       "as this run's impact).")
    if trained:
        with st.expander("How it was trained (the cost of training from scratch)"):
            st.altair_chart(loss_curve_chart(trained), width="stretch")
            st.caption(f"Sample check: {trained['sample_accuracy_how']}. Script: scripts/train_digits_diffusion.py.")
            st.json({k: v for k, v in trained.items() if k != "loss_curve"}, expanded=False)
