"""Image generation, speech and image-text with Run on = Both, side by side, in headless Chromium, against a loopback
server that replays RECORDED answers of the documented schemas (OpenAI images, audio transcription and vision chat).

Offline, the local text-to-image and CLIP models cannot load, so those pages show the hosted column beside the
local one's plain "not run" line, as Community Cloud does; speech runs the packaged tiny.en locally beside it.
"""
import os
import time

import pytest

from tests.support.browser_support import SHOTS, browser, click, server, wait_for_page, wait_text  # noqa: F401 (fixtures)
from tests.support.openai_servers import (
    RecordedServer, png, recorded_openai_image, recorded_stream, recorded_transcription,
)

pytestmark = pytest.mark.browser
PLANTED = "sk-PLANTED-browser-media-51d2"


@pytest.fixture(scope="module")
def recorded_url():
    """One recorded server for every page's calls, also as OPENAI_BASE_URL for the app (started after this)."""
    routes = {
        "/images/generations": recorded_openai_image(png(256, 256, (30, 120, 200))),
        "/audio/transcriptions": recorded_transcription(
            " Before you train a new model, try one that already exists.", [(0.0, 4.4, " Before you train a new model, "
                                                                            "try one that already exists.")]),
        "/chat/completions": recorded_stream(["cat"], prompt_tokens=310),
    }
    with RecordedServer([recorded_stream(["unexpected"])], routes) as recorded:
        before = os.environ.get("OPENAI_BASE_URL")
        os.environ["OPENAI_BASE_URL"] = recorded.url
        yield recorded
        if before is None:
            os.environ.pop("OPENAI_BASE_URL")
        else:
            os.environ["OPENAI_BASE_URL"] = before


def _both_with_key(browser, path: str, title: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{browser.base}{path}")
    wait_for_page(browser)
    assert title in browser.find_element(By.TAG_NAME, "h1").text
    click(browser, "Both, side by side")
    wait_text(browser, "Hosted endpoint")
    def visible_key_field(driver):
        fields = driver.find_elements(By.CSS_SELECTOR, "input[aria-label='API key (this session only)']")
        return next((e for e in fields if e.is_displayed()), None)

    field = WebDriverWait(browser, 60).until(visible_key_field)
    field.send_keys(PLANTED + "\n")
    time.sleep(2)


def _shot_and_check(browser, name: str) -> str:
    from selenium.webdriver.common.by import By

    time.sleep(1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script(
        "return document.querySelector(\"[data-testid='stMain']\")?.scrollHeight || document.body.scrollHeight")
    browser.set_window_size(1400, min(max(int(height) + 200, 1600), 6000))  # the whole page, results included
    time.sleep(1)
    browser.save_screenshot(str(SHOTS / name))
    browser.set_window_size(1400, 1600)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "This server" in body and "Hosted API" in body
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    browser.execute_script("document.querySelectorAll(\"input[type='password']\").forEach(e => e.remove())")
    source = browser.page_source
    at = source.find(PLANTED)
    assert at < 0, source[max(at - 300, 0):at + 60]
    return body


@pytest.fixture(scope="module")
def page(recorded_url, server, browser):
    browser.base = server
    return browser


def test_image_generation_both_side_by_side(page, recorded_url):
    _both_with_key(page, "/image-generation", "Image generation")
    click(page, "Fox")
    time.sleep(1)
    click(page, "Generate")
    wait_text(page, "Images/s", timeout=120)
    body = _shot_and_check(page, "image-generation-hosted-both.png")
    assert "cannot run here" in body and "Cost ($)" in body
    assert any(r["path"] == "/v1/images/generations" and r["headers"].get("Authorization") == f"Bearer {PLANTED}"
               for r in recorded_url.requests)


def test_speech_both_side_by_side(page):
    _both_with_key(page, "/speech", "Speech")
    click(page, "Transcribe")
    wait_text(page, "Same input, both ways", timeout=300)
    body = _shot_and_check(page, "speech-hosted-both.png")
    assert "Audio s/s" in body and "Transcript (hosted)" in body


def test_image_text_both_side_by_side(page, tmp_path_factory):
    _both_with_key(page, "/image-text", "Image-text")
    click(page, "Label images")
    wait_text(page, "Images/s", timeout=120)
    _shot_and_check(page, "image-text-hosted-both.png")
    from core import runs

    assert PLANTED.encode() not in runs.db_path().read_bytes()
    logs = list(tmp_path_factory.getbasetemp().rglob("streamlit.log"))
    assert logs and all(PLANTED not in log.read_text() for log in logs)
