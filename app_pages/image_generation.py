"""Image generation page: text-to-image with a pretrained diffusion model, or digits from a model this project trained."""
import streamlit as st

from core import generation, registry
from core.charts.generation import loss_curve_chart
from core.config import get_settings
from ui.common import friendly_errors, record, show_measurement
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

    def on_step(update: generation.StepUpdate) -> None:
        st.session_state[f"{prefix}_progress"] = (update.step, update.total)
        bar.progress(update.step / update.total, text=f"Step {update.step} of {update.total} · {update.elapsed_s:.1f} s")
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


def _buttons(prefix: str, label: str) -> bool:
    run, cancel, _ = st.columns([1, 1, 4])
    clicked = run.button(label, type="primary", key=f"{prefix}_run", on_click=_set, args=(f"{prefix}_cancel", False))
    cancel.button("Cancel", key=f"{prefix}_cancel_button", on_click=_set, args=(f"{prefix}_cancel", True))
    return clicked


def _show_result(result, image, prefix: str, caption: str) -> None:
    for note in result.notes:
        st.info(note, icon=":material/info:")
    if result.cancelled:
        st.info(f"Cancelled after step {result.steps_done}; nothing was decoded.", icon=":material/cancel:")
    else:
        st.image(image, caption=caption, width=min(image.size[0], 900))
        st.download_button("Download PNG (settings in its metadata)", result.png(), file_name=f"{prefix}.png",
                           mime="image/png", key=f"{prefix}_download", on_click="ignore")
    show_measurement(result.measurement)


def _unavailable(spec) -> None:
    why = ("this server runs in offline mode (UBT_OFFLINE or HF_HUB_OFFLINE)" if get_settings().offline
           else "this server cannot reach huggingface.co")
    st.warning(
        f"**{spec.title} cannot run here.** Its weights (`{spec.hub_id}`, about {spec.size_mb / 1000:.1f} GB) come "
        f"from the Hugging Face Hub, {why}, and no copy is on this disk. No PyPI package ships text-to-image weights.\n\n"
        f"**To use it:** run the app on a machine with internet access (the weights download once and are cached), or "
        f"download the repository elsewhere (`hf download {spec.hub_id}`) and copy the folder to "
        f"`$UBT_MODEL_DIR/{spec.hub_id}`.\n\n**Works offline now:** the digits generator this project trained itself.",
        icon=":material/cloud_off:",
    )
    st.button("Use the digits generator", key="imagegen_use_digits", on_click=_set, args=("imagegen_mode", MODES[1]))


st.title("Image generation")
st.caption(
    "Inference with a diffusion model: start from noise and remove a little of it at every step. Each result shows "
    "where the model came from, load time, seconds per step and per image, and peak memory, measured on this server."
)
mode = st.radio("Generator", MODES, key="imagegen_mode", horizontal=True)

# --- text to image --------------------------------------------------------------------------------
if mode == MODES[0]:
    spec = model_picker("Model", task="text-to-image", key="imagegen_model", family="image-generation")
    answer = registry.availability(spec)
    if answer.resolution is None:
        _unavailable(spec)
    else:
        if note := generation.budget_note(spec.key):
            st.warning(note, icon=":material/memory:")
        guided = spec.options.get("guidance", 0.0) > 1.0
        cols = st.columns(len(PROMPT_EXAMPLES))
        for col, (name, value) in zip(cols, PROMPT_EXAMPLES.items()):
            col.button(name, key=f"imagegen_example_{name}", on_click=_set, args=("imagegen_prompt", value), width="stretch")
        st.text_area("Prompt", key="imagegen_prompt", height=90, placeholder="Describe the image, or pick an example above.")
        if guided:
            st.text_input("Negative prompt (what to avoid)", key="imagegen_negative")
        c1, c2, c3, c4 = st.columns(4)
        steps = c1.slider("Steps", 1, generation.MAX_STEPS, int(spec.options.get("steps", 1)), key="imagegen_steps")
        guidance = c2.slider("Guidance scale", 1.0, 12.0, float(spec.options.get("guidance", 7.5)), 0.5,
                             key="imagegen_guidance") if guided else 0.0
        width = c3.number_input("Width (px)", generation.MIN_SIZE, generation.MAX_SIZE, 512, 8, key="imagegen_width")
        height = c4.number_input("Height (px)", generation.MIN_SIZE, generation.MAX_SIZE, 512, 8, key="imagegen_height")
        c5, c6 = st.columns(2)
        seed = c5.number_input("Seed", 0, generation.MAX_SEED, 0, key="imagegen_seed")
        tiny = c6.toggle("Tiny decoder (TAESD): much faster decoding, slightly softer detail", key="imagegen_tiny")
        clicked = _buttons("imagegen", "Generate")
        _cancelled_note("imagegen")
        if clicked:
            st.session_state.pop("imagegen_result", None)
            request = generation.ImageRequest(
                prompt=st.session_state.get("imagegen_prompt", ""), negative_prompt=st.session_state.get("imagegen_negative", ""),
                steps=steps, guidance_scale=guidance, width=int(width), height=int(height), seed=int(seed), tiny_decoder=tiny,
            )
            on_step, progress = _progress("imagegen", 192)
            with friendly_errors("Image generation"), st.spinner(f"Generating with {spec.title} (its first use loads it) ..."):
                result = generation.generate_image(spec.key, request, on_step,
                                                   lambda: bool(st.session_state.get("imagegen_cancel")))
                st.session_state["imagegen_result"] = result
                record(result.measurement, "image-generation", "text-to-image", {
                    "steps": result.request.steps, "width": result.request.width, "height": result.request.height,
                    "guidance_scale": result.request.guidance_scale, "tiny_decoder": tiny, "cancelled": result.cancelled,
                })
            progress.empty()
            st.session_state.pop("imagegen_progress", None)  # finished or failed; a Cancel click never gets here
        result = st.session_state.get("imagegen_result")
        if result is not None:
            _show_result(result, result.image, "imagegen", f"{result.parameters['model']} · seed {result.request.seed}")

# --- digits, trained by this project ------------------------------------------------------------------
else:
    trained = generation.digits_training_record()
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
    seed = c4.number_input("Seed", 0, generation.MAX_SEED, 0, key="digits_seed")
    clicked = _buttons("digits", "Draw digits")
    _cancelled_note("digits")
    if clicked:
        st.session_state.pop("digits_result", None)
        on_step, progress = _progress("digits", 384)
        with friendly_errors("Digit generation"):
            result = generation.generate_digits(
                st.session_state.get("digits_digit", 0), count, steps, guidance, int(seed), on_step,
                lambda: bool(st.session_state.get("digits_cancel")),
            )
            st.session_state["digits_result"] = result
            record(result.measurement, "image-generation", "digits", {
                "digit": result.parameters["digit"], "images": count, "steps": steps, "guidance_scale": guidance,
                "cancelled": result.cancelled,
            })
        progress.empty()
        st.session_state.pop("digits_progress", None)  # finished or failed; a Cancel click never gets here
    result = st.session_state.get("digits_result")
    if result is not None:
        _show_result(result, result.grid, "digits", f"digit {result.parameters['digit']} · 16×16 px each, shown enlarged")
    if trained:
        with st.expander("How it was trained (the cost of training from scratch)"):
            st.altair_chart(loss_curve_chart(trained), width="stretch")
            st.caption(f"Sample check: {trained['sample_accuracy_how']}. Script: scripts/train_digits_diffusion.py.")
            st.json({k: v for k, v in trained.items() if k != "loss_curve"}, expanded=False)
