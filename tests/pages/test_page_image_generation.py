"""The Image generation page through streamlit's AppTest: offline hub message, tiny pipeline, bundled digits."""

import pytest
from streamlit.testing.v1 import AppTest

from core import registry
from core.catalog import ASSETS
from tests.support import tiny_generation as tiny
from tests.support.apptest import app_at

PAGE = "app_pages/image_generation.py"
DIGITS_MODE = "Digits (trained by this project, offline)"


def page() -> AppTest:
    at = app_at(PAGE, 120)
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in (at.warning, at.info, at.error, at.caption, at.markdown) for e in kind)


def test_hub_model_unavailable_says_which_why_and_how_then_offers_the_digits(fresh_cache):
    at = page()
    assert not at.exception
    message = at.warning[0].value
    assert "cannot run here" in message and "IDKiro/sdxs-512-0.9" in message
    assert "offline mode" in message and "$UBT_MODEL_DIR/IDKiro/sdxs-512-0.9" in message
    at.button(key="imagegen_use_digits").click().run()
    assert not at.exception and at.radio(key="imagegen_mode").value == DIGITS_MODE


@pytest.fixture
def tiny_pipeline(fresh_cache, tmp_path):
    registry.install("sdxs-512", tiny.text_to_image(tmp_path, default_steps=2, default_guidance=0.0))


def generate(at: AppTest, prompt: str, width: int = 256, height: int = 256) -> AppTest:
    at.text_area(key="imagegen_prompt").input(prompt)
    at.slider(key="imagegen_steps").set_value(2)
    at.number_input(key="imagegen_width").set_value(width)
    at.number_input(key="imagegen_height").set_value(height)
    return at.button(key="imagegen_run").click().run()


def test_text_to_image_with_the_tiny_pipeline_shows_the_image_and_its_measurements(tiny_pipeline):
    at = generate(page(), "a red fox in the snow")
    assert not at.exception and not at.warning
    result = at.session_state["imagegen_result"]
    assert result.image.size == (256, 256) and result.steps_done == 2
    labels = [m.label for m in at.metric]
    assert {"Load (first use)", "Latency", "Peak memory", "Step", "Decode", "Image"} <= set(labels)
    assert at.get("download_button")


@pytest.mark.parametrize(("prompt", "width", "expected"), [
    ("", 256, "no prompt"),
    ("a cat", 300, "not a multiple of 8"),
])
def test_bad_input_gets_a_clear_message(tiny_pipeline, prompt, width, expected):
    at = generate(page(), prompt, width=width)
    assert not at.exception
    assert expected in at.warning[0].value
    assert "imagegen_result" not in at.session_state


def test_a_10000_character_prompt_is_used_up_to_the_tokenizers_limit(tiny_pipeline):
    at = generate(page(), "a red fox " * 1000)
    assert not at.exception
    assert any("only its first" in e.value for e in at.info)


def test_cancel_after_an_interrupted_run_says_where_it_stopped(tiny_pipeline):
    at = page()
    at.session_state["imagegen_progress"] = (1, 4)  # what the step callback leaves when Cancel interrupts a run
    at.button(key="imagegen_cancel_button").click().run()
    assert not at.exception and "Cancelled after step 1 of 4" in at.info[0].value
    at.button(key="imagegen_cancel_button").click().run()
    assert "Nothing is running" in at.info[0].value


@pytest.mark.skipif(not (ASSETS / "digits_diffusion" / "unet").exists(), reason="assets/digits_diffusion is missing")
def test_digits_generator_works_offline_and_shows_how_it_was_trained(fresh_cache):
    at = page()
    at.radio(key="imagegen_mode").set_value(DIGITS_MODE).run()
    at.radio(key="digits_digit").set_value(7)
    at.slider(key="digits_count").set_value(4)
    at.slider(key="digits_steps").set_value(5)
    at.button(key="digits_run").click().run()
    assert not at.exception and not at.warning
    result = at.session_state["digits_result"]
    assert result.parameters["digit"] == 7 and result.pixels.shape == (4, 16, 16)
    assert "trained from scratch" in texts(at)
    assert at.get("download_button") and at.get("vega_lite_chart")
    assert 0.0 <= result.readable <= 1.0 and "Quality of this draw" in texts(at)
    from core import runs

    stored = runs.fetch_runs(session_id=at.session_state["session_id"])
    assert stored.iloc[-1]["metrics"]["accuracy"] == pytest.approx(result.readable)  # Summary's impact axis


def test_the_readme_tells_community_cloud_users_the_page_has_a_hosted_endpoint():
    """The page offers Run on: Hosted API (ui.hosted.where_picker); the README's Cloud section must not say otherwise."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    cloud = readme.split("## Deploy on Community Cloud")[1].split("\n## ")[0]
    assert "does not offer one yet" not in cloud
    assert "Hosted API" in cloud and "Run on" in cloud
    assert "where_picker(" in (Path(__file__).resolve().parents[2] / "app_pages" / "image_generation.py").read_text()
