"""The Fine-tune page in headless Chromium: a hostile zip uploaded through the file uploader."""
import io
import time
import zipfile

import pytest
from PIL import Image

from tests.support.browser_support import SHOTS, browser, click, server, wait_for_page, wait_text  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def hostile_zip() -> bytes:
    """One class folder 'b', a '../' entry and a member that unpacks to 64 MB of zeros (a small zip bomb)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for i in range(5):
            archive.writestr(f"b/{i}.png", _png((40 * i, 90, 200)))
        archive.writestr("../escape.png", _png((0, 0, 0)))
        with archive.open("a/bomb.png", "w", force_zip64=True) as member:
            for _ in range(64):
                member.write(bytes(2**20))
    return buf.getvalue()


def _pick_radio_option(driver, text: str, timeout: float = 30) -> None:
    click(driver, text, timeout, selector="[data-testid='stRadio'] label")


def test_hostile_zip_shows_every_note_with_the_folder_worded_error(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    upload = tmp_path / "hostile.zip"
    upload.write_bytes(hostile_zip())
    browser.get(f"{server}/fine-tune")
    wait_for_page(browser)
    _pick_radio_option(browser, "Upload my data")
    wait_text(browser, "Upload a file, or pick an example above.", 60)
    browser.find_element(By.CSS_SELECTOR, "[data-testid='stFileUploader'] input[type='file']").send_keys(str(upload))
    wait_text(browser, "Found only one class folder ('b')", 60)
    wait_for_page(browser)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "fine-tune-hostile-zip.png"))

    alerts = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stMain'] [data-testid='stAlert']")]
    error = next(a for a in alerts if "Found only one class folder ('b')" in a)
    assert "Put the images of each class in a folder of their own" in error
    assert "column" not in error  # a zip has folders, not columns
    notes = " ".join(a for a in alerts if a != error)
    assert "Refused 1 entry for safety" in notes and "../escape.png" in notes
    assert "Refused 1 file that would unpack to too much data" in notes and "a/bomb.png (64 MB from" in notes
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stMain'] h3")]
    assert headers == ["1 · Data", "2 · Export a trained head, or use one"]  # nothing to train on: no arms


def test_encoder_names_in_the_arm_settings_are_not_cut(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/fine-tune")  # the text example: the arms' encoders are text encoders
    wait_text(browser, "Settings of the chosen arms", 60)
    wait_for_page(browser)
    cut = browser.execute_script(
        "return [...document.querySelectorAll(\"[data-testid='stCheckbox'] *\")]"
        ".filter(e => e.scrollWidth > e.clientWidth + 1 && e.textContent.trim()).map(e => e.textContent.trim());")
    assert not cut, f"arm names cut: {cut}"
    next(e for e in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stExpander'] summary")
         if "Settings of the chosen arms" in e.text).click()
    wait_for_page(browser)
    shown = {}
    for tab in ("Use as is", "Transfer learning", "Fine-tune"):
        click(browser, tab)
        time.sleep(0.5)
        for value, scroll, client in browser.execute_script(
                "return [...document.querySelectorAll(\"[data-testid='stTabs'] [data-testid='stSelectbox'] input\")]"
                ".filter(e => e.offsetParent !== null).map(e => [e.value, e.scrollWidth, e.clientWidth]);"):
            shown[tab] = value
            assert scroll <= client, f"{tab}: {value!r} is cut ({scroll} px of text in {client} px)"
        if tab == "Fine-tune":
            SHOTS.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(SHOTS / "fine-tune-arm-settings.png"))
    minilm = "all-MiniLM-L6-v2 sentence embeddings"
    assert shown == {"Use as is": minilm, "Transfer learning": minilm, "Fine-tune": minilm}
