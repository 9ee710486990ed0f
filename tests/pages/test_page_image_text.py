"""The Image-text page through streamlit's AppTest: tiny models installed under the default keys, and none."""
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import images, registry, vision
from tests.support import tiny_vision
from tests.support.apptest import app_at

ROOT = Path(__file__).resolve().parents[2]
PAGE = "app_pages/image_text.py"


def png(colour=(200, 30, 30), size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_models():
    return tiny_vision.clip_model(), tiny_vision.blip_captioner()


@pytest.fixture
def installed(fresh_cache, tiny_models):
    clip, blip = tiny_models
    registry.install(vision.CLIP_KEY, clip)
    registry.install(vision.CAPTION_KEY, blip)


def open_page() -> AppTest:
    at = app_at(PAGE, 90)
    return at.run()


def charts(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def messages(elements) -> str:
    return "\n".join(e.value for e in elements)


def test_without_any_model_the_page_says_so_plainly_and_still_renders(fresh_cache):
    at = open_page()
    assert not at.exception
    top = at.warning[0].value
    assert "Not available on this machine" in top
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in top and "Salesforce/blip-image-captioning-base" in top
    assert "UBT_MODEL_DIR" in top and "PyPI" in top
    assert at.button(key="it_label_run").disabled and at.button(key="it_caption_run").disabled
    assert at.text_area(key="it_labels").value and at.multiselect(key="it_samples").value == ["cat"]


def test_zero_shot_on_the_default_sample_shows_bars_and_measurements(installed):
    at = open_page()
    top = messages(at.warning)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" not in top and "blip-image-captioning" not in top  # only the others
    at.button(key="it_label_run").click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert len(charts(at)) == 1
    labels = {m.label for m in at.metric}
    assert {"Latency", "Peak memory", "Images/s", "Preprocess"} <= labels
    assert "Preprocessing (resize, crop, normalise) took" in messages(at.caption)


def test_several_images_with_bad_ones_among_them(installed):
    at = open_page()
    at.file_uploader(key="it_uploads").set_value([
        ("red.png", png(), "image/png"), ("empty.jpg", b"", "image/jpeg"),
        ("notes.txt", b"not an image", "text/plain"), ("blue.png", png((0, 0, 255)), "image/png"),
    ])
    at.run()
    problems = messages(at.warning)
    assert "empty.jpg is empty (0 bytes)" in problems and "notes.txt is not an image" in problems
    at.button(key="it_label_run").click().run()
    assert not at.exception and not at.error, messages(at.error)
    heatmap = json.loads(charts(at)[0].spec)
    assert [layer["mark"]["type"] for layer in heatmap["layer"]] == ["rect", "text"]
    top_labels = [m.value for m in at.markdown if re.fullmatch(r"\*\*.+\*\* · \d+%", m.value)]
    assert len(top_labels) == 3  # red, blue and the cat sample


def test_more_files_than_the_limit_are_cut_with_a_message(installed):
    at = open_page()
    at.file_uploader(key="it_uploads").set_value([(f"img{i}.png", png(), "image/png") for i in range(images.MAX_IMAGES + 2)])
    at.run()
    assert not at.exception
    assert f"only the first {images.MAX_IMAGES} are used" in messages(at.warning)


def test_bad_labels_and_template_get_a_message(installed):
    at = open_page()
    at.text_area(key="it_labels").input("cat")
    at.button(key="it_label_run").click().run()
    assert not at.exception and "at least two" in messages(at.warning)
    at.text_area(key="it_labels").input("cat, dog")
    at.text_input(key="it_template").input("a photo")
    at.button(key="it_label_run").click().run()
    assert not at.exception and "needs {}" in messages(at.warning)


def test_no_image_gets_a_message(installed):
    at = open_page()
    at.multiselect(key="it_samples").set_value([]).run()
    assert "pick a sample image to start" in messages(at.info)
    at.button(key="it_label_run").click().run()
    at.button(key="it_caption_run").click().run()
    assert not at.exception and "no image to work on" in messages(at.warning)


def test_label_example_button_fills_the_labels(installed):
    at = open_page()
    at.button(key="it_labels_Animals").click().run()
    assert at.text_area(key="it_labels").value == "cat, dog, bird, horse, fish"


def test_caption_greedy_then_beam_search_with_a_prefix(installed):
    at = open_page()
    at.slider(key="it_max_new_tokens").set_value(5)
    at.button(key="it_caption_run").click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert "Tokens/s" in {m.label for m in at.metric}
    assert at.slider(key="it_beams").disabled
    at.radio(key="it_decoding").set_value("Beam search").run()
    at.slider(key="it_beams").set_value(2)
    at.text_input(key="it_prefix").input("a picture of")
    at.button(key="it_caption_run").click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert any(m.value.startswith("**a picture of") for m in at.markdown)


def test_camera_is_only_requested_when_switched_on(installed):
    at = open_page()
    assert not at.camera_input
    at.toggle(key="it_camera_on").set_value(True).run()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 128, 0)).save(buffer, "JPEG")
    at.camera_input(key="it_camera").set_value(("shot.jpg", buffer.getvalue(), "image/jpeg"))
    at.run()
    assert not at.exception
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert any(caption.startswith("camera.jpg") for caption in captions) and any(c.startswith("cat.jpg") for c in captions)
