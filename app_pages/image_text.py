"""Image-text page: CLIP zero-shot labels and BLIP captions for your own images, here, from a hosted vision chat
model, or both side by side, measured."""
import streamlit as st

from functools import partial

from core import images, providers, registry, vision
from ui.common import friendly_errors
from ui.hosted import HOSTED, LOCAL, hosted_endpoint, where_picker
from ui.run_on import Here, RunOn, There
from ui.sidebar import model_picker, refresh_sidebar
from ui.views.vision import compare_labels, compare_rates, show_captions, show_image, show_labels
from ui.widgets import example_buttons, grid

LABEL_EXAMPLES = {
    "Sample subjects": "cat, cup of coffee, rocket, astronaut, temple, flower, house",
    "Animals": "cat, dog, bird, horse, fish",
    "Scenes": "indoors, outdoors, outer space, city, countryside",
    "Styles": "photograph, drawing, painting, diagram",
}
DEFAULT_SAMPLES = ["cat"]


def _hosted_setup(prefix: str, what: str):
    """The Run on choice and, for a hosted run, the vision chat endpoint form; returns (where, endpoint or None)."""
    where = where_picker(f"{prefix}_where")
    return where, hosted_endpoint(where, f"Hosted endpoint (a vision chat model, {what})", providers.CHAT, "vision",
                                  f"{prefix}_hosted")


def _unavailable_note(missing: dict[str, str], key: str) -> str | None:
    if key in missing:
        st.warning(missing[key], icon=":material/cloud_off:")
        return missing[key]
    return None


st.title("Image-text: label and caption images with pretrained models")
st.caption(
    "Inference only: CLIP compares an image with a text for every candidate label (zero-shot: no training "
    "on your labels), and BLIP writes a caption. Each result shows where the model came from, load time, "
    "latency, images/s, how much of the time went into preprocessing, and peak memory, measured on this server."
)

# --- which models can run here --------------------------------------------------------------------
missing = vision.unavailable()
if missing:
    st.warning(
        "**Not available on this machine:**\n\n" + "\n".join(f"- {reason}" for reason in missing.values())
        + f"\n\n{vision.OFFLINE_WHY} Put a downloaded copy in the folder named above (set `UBT_MODEL_DIR`), "
        "or run the app where it can reach huggingface.co. Choosing images and labels below still works.",
        icon=":material/cloud_off:",
    )

# --- images ---------------------------------------------------------------------------------------
st.subheader("Images")
samples = images.sample_images()
upload_col, sample_col = st.columns([3, 2])
uploads = upload_col.file_uploader(
    "Upload images", accept_multiple_files=True, key="it_uploads",
    help=f"JPEG, PNG, GIF, WebP, BMP or TIFF; up to {images.MAX_IMAGES} images are used at once.",
)
st.session_state.setdefault("it_samples", DEFAULT_SAMPLES)
chosen = sample_col.multiselect("Sample images", list(samples), key="it_samples", help="See assets/images/LICENSES.md.")
photo = None
if st.toggle("Use the camera", key="it_camera_on", help="The browser asks for the camera only while this is on."):
    photo = st.camera_input("Take a photo", key="it_camera")

files = [(upload.name, upload.getvalue()) for upload in uploads or []]
files += [("camera.jpg", photo.getvalue())] if photo is not None else []
files += [(samples[name].name, samples[name].read_bytes()) for name in chosen]
batch = images.decode_many(files, memo=st.session_state.setdefault("it_decoded", {}))
for problem in batch.problems:
    st.warning(problem, icon=":material/broken_image:")
notes = [note for decoded in batch.images for note in decoded.notes]
if notes:
    with st.expander(f"What was done to the images ({len(notes)} note(s))"):
        st.markdown("\n".join(f"- {note}" for note in notes))
if batch.images:
    grid(batch.images, show_image)
else:
    st.info("Upload images, take a photo or pick a sample image to start.", icon=":material/add_photo_alternate:")
pictures = [decoded.image for decoded in batch.images]
names = [decoded.name for decoded in batch.images]

labels_tab, caption_tab = st.tabs(["Zero-shot labels (CLIP)", "Caption (BLIP)"])

# --- zero-shot labelling (a fragment: its clicks rerun this tab only, not the images above) ---------
@st.fragment
def labels_section(pictures: list, names: list[str]) -> None:
    where, point = _hosted_setup("it_label", "shown each image and asked to pick one of your labels")
    problem = None
    if where != HOSTED:
        spec = model_picker("CLIP model", task="zero-shot", key="it_clip_model", family="image-text")
        problem = _unavailable_note(missing, spec.key)
    example_buttons(LABEL_EXAMPLES, "it_labels", "it_labels")
    st.session_state.setdefault("it_labels", LABEL_EXAMPLES["Sample subjects"])
    st.text_area("Candidate labels (comma separated or one per line)", key="it_labels", height=80)
    st.session_state.setdefault("it_template", vision.DEFAULT_TEMPLATE)
    if where != HOSTED:
        st.text_input("Prompt template ({} is replaced by each label)", key="it_template")
    run_here, run_hosted = where != HOSTED and problem is None, where != LOCAL and point is not None
    clicked = st.button("Label images", type="primary", key="it_label_run",
                        disabled=not (run_hosted if where != LOCAL else run_here), help=problem if where == LOCAL else None)
    flow = RunOn("it_label", where, "image-text", "zero-shot", "Zero-shot labelling")
    if clicked:
        with friendly_errors("Zero-shot labelling"):
            labels = vision.parse_labels(st.session_state["it_labels"])
            here = run_here and Here(partial(registry.load, spec.key), turn="label images", busy=f"Running {spec.title} ...",
                                     run=partial(vision.zero_shot, images=pictures, labels=labels,
                                                 template=st.session_state["it_template"]), progress="Encoding images")
            there = run_hosted and There(point, partial(providers.label_images, images=pictures, labels=labels),
                                         f"{len(pictures)} image(s), one call each")
            flow.run(here or None, there or None, params={"images": len(pictures), "labels": len(labels)},
                     kept=list(zip(names, pictures)))
    flow.show(show_labels, compare_labels)
    refresh_sidebar()  # this section's own runs leave the sidebar's memory figures as they were


# --- captioning (a fragment too) ------------------------------------------------------------------
@st.fragment
def caption_section(pictures: list, names: list[str]) -> None:
    where, point = _hosted_setup("it_caption", f"asked: “{providers.CAPTION_PROMPT}”")
    problem = None
    if where != HOSTED:
        spec = model_picker("Captioning model", task="captioning", key="it_caption_model", family="image-text")
        problem = _unavailable_note(missing, spec.key)
        st.text_input("Optional text prefix (the caption continues it)", key="it_prefix", placeholder="a picture of")
        decoding_col, beams_col, tokens_col = st.columns(3)
        decoding = decoding_col.radio("Decoding", ["Greedy", "Beam search"], key="it_decoding", horizontal=True)
        beams = beams_col.slider("Beams", 2, vision.MAX_BEAMS, 3, key="it_beams", disabled=decoding == "Greedy")
        max_new_tokens = tokens_col.slider("Max new tokens", 5, 60, 30, key="it_max_new_tokens")
    run_here, run_hosted = where != HOSTED and problem is None, where != LOCAL and point is not None
    clicked = st.button("Caption images", type="primary", key="it_caption_run",
                        disabled=not (run_hosted if where != LOCAL else run_here), help=problem if where == LOCAL else None)
    flow = RunOn("it_caption", where, "image-text", "captioning", "Captioning")
    if clicked:
        with friendly_errors("Captioning"):
            settings = {}
            if run_here:
                prefix = st.session_state.get("it_prefix", "")
                settings = {"beams": 1 if decoding == "Greedy" else beams, "max_new_tokens": max_new_tokens}
            here = run_here and Here(partial(registry.load, spec.key), turn="caption", busy=f"Running {spec.title} ...",
                                     run=partial(vision.caption, image=pictures, prefix=prefix, **settings),
                                     progress="Captioning images")
            there = run_hosted and There(point, partial(providers.caption, images=pictures),
                                         f"{len(pictures)} image(s), one call each")
            flow.run(here or None, there or None, params={"images": len(pictures)},
                     local_params={**settings, "prefix": bool(run_here and prefix.strip())}, kept=list(zip(names, pictures)))
    flow.show(show_captions, compare_rates)
    refresh_sidebar()


with labels_tab:
    labels_section(pictures, names)
with caption_tab:
    caption_section(pictures, names)
