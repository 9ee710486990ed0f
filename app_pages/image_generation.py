"""Image generation page: text-to-image with a pretrained diffusion model (here, on a hosted API, or both side by
side), or digits from a model this project trained."""
import streamlit as st

from functools import partial

from core import imagegen, providers, registry
from core.charts.generation import loss_curve_chart
from ui.common import friendly_errors
from ui.hosted import HOSTED, LOCAL, comparison, hosted_endpoint, where_picker
from ui.run_on import Here, RunOn, There, run_buttons, stop_requested, stopped_note
from ui.sidebar import model_picker
from ui.views.images import load_text_to_image, offline_warning, show_digits, show_image
from ui.widgets import example_buttons

MODES = ("Text to image (pretrained)", "Digits (trained by this project, offline)")
PROMPT_EXAMPLES = {
    "Fox": "a red fox in the snow, morning light, photo",
    "City": "a watercolour painting of a harbour city at dusk",
    "Robot": "a small friendly robot reading a book, studio lighting",
}

st.title("Image generation")
st.caption(
    "Inference with a diffusion model: start from noise and remove a little of it at every step. Each result shows "
    "where the model came from, load time, seconds per step and per image, and peak memory, measured on this server."
)
mode = st.radio("Generator", MODES, key="imagegen_mode", horizontal=True)

# --- text to image: here, on a hosted API, or both ---------------------------------------------------
if mode == MODES[0]:
    where = where_picker("imagegen_where")
    spec = model_picker("Model", task="text-to-image", key="imagegen_model", family="image-generation") if where != HOSTED else None
    local_ok = spec is not None and registry.availability(spec).resolution is not None
    point = hosted_endpoint(where, "Hosted endpoint (OpenAI-compatible images, Hugging Face or Replicate)",
                            providers.IMAGE_KINDS, "images", "imagegen_hosted")
    if spec is not None and not local_ok:
        offline_warning(spec, digits_mode=MODES[1])
    if local_ok or where != LOCAL:
        if local_ok and (note := imagegen.budget_note(spec.key)):
            st.warning(note, icon=":material/memory:")
        guided = local_ok and spec.options.get("guidance", 0.0) > 1.0
        example_buttons(PROMPT_EXAMPLES, "imagegen_prompt", "imagegen_example")
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
        clicked = run_buttons("imagegen", "Generate", disabled=where != LOCAL and point is None)
        stopped_note("imagegen")
        flow = RunOn("imagegen", where, "image-generation", "text-to-image", "Image generation")
        if clicked:
            request = imagegen.ImageRequest(
                prompt=st.session_state.get("imagegen_prompt", ""), negative_prompt=st.session_state.get("imagegen_negative", ""),
                steps=steps, guidance_scale=guidance, width=int(width), height=int(height), seed=int(seed), tiny_decoder=tiny,
            )
            with friendly_errors("Image generation"):
                request, _ = imagegen.validate_request(request)  # a bad prompt or size is said once, before any call
                here = local_ok and Here(
                    partial(load_text_to_image, spec.key, request), turn="generate image", progress="Step",
                    busy=f"Generating with {spec.title} (its first use loads it) ...",
                    run=lambda models, on_progress: imagegen.generate_image(
                        models[0], request, on_progress, stop_requested("imagegen"), decoder=models[1]))
                there = point and There(point, partial(
                    providers.generate_image, prompt=request.prompt, width=request.width, height=request.height,
                    seed=request.seed, steps=request.steps, negative_prompt=request.negative_prompt), "one image")
                flow.run(here or None, there or None, params={"width": request.width, "height": request.height},
                         local_params={"steps": request.steps, "tiny_decoder": tiny},
                         hosted_params={"seed": request.seed},
                         result_params=lambda r: {"guidance_scale": r.request.guidance_scale, "cancelled": r.cancelled})

        def _compare(here: imagegen.ImageResult, there: imagegen.ImageResult) -> None:
            if not here.cancelled:
                comparison(here.measurement, there.measurement, "images", 1 / max(here.measurement.latency_s, 1e-9),
                           there.measurement.extra["images_per_s"])

        flow.show(show_image, _compare)

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
    digit = st.radio("Digit", list(range(10)), key="digits_digit", horizontal=True)
    c1, c2, c3, c4 = st.columns(4)
    count = c1.slider("Images", 1, 32, 8, key="digits_count")
    steps = c2.slider("DDIM steps", 1, 100, 20, key="digits_steps")
    guidance = c3.slider("Guidance scale", 1.0, 5.0, 2.0, 0.5, key="digits_guidance",
                         help="1 = follow the class label only; higher = more typical digits, less variety.")
    seed = c4.number_input("Seed", 0, imagegen.MAX_SEED, 0, key="digits_seed")
    clicked = run_buttons("digits", "Draw digits")
    stopped_note("digits")
    flow = RunOn("digits", LOCAL, "image-generation", "digits", "Digit generation")
    if clicked:
        flow.run(Here(partial(registry.load, imagegen.DIGITS_KEY), turn="generate image", busy="Drawing digits ...",
                      progress="Step", preview_width=384,
                      run=partial(imagegen.generate_digits, digit=digit or 0, count=count, steps=steps, guidance=guidance,
                                  seed=int(seed), should_stop=stop_requested("digits"))),
                 None, params={"digit": digit or 0, "images": count, "steps": steps, "guidance_scale": guidance},
                 result_params=lambda r: {"cancelled": r.cancelled},
                 metrics=lambda r: None if r.readable is None else {"accuracy": r.readable})
    flow.show(show_digits)
    if trained:
        with st.expander("How it was trained (the cost of training from scratch)"):
            st.altair_chart(loss_curve_chart(trained), width="stretch")
            st.caption(f"Sample check: {trained['sample_accuracy_how']}. Script: scripts/train_digits_diffusion.py.")
            st.json({k: v for k, v in trained.items() if k != "loss_curve"}, expanded=False)
