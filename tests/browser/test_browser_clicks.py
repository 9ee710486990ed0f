"""In Chromium: a Classify click reruns only the sentiment section, and the rest of the page (title,
sidebar with its model list, the Generation tab's prompt) stays as it was. Screenshots in SHOTS."""
import pytest

from tests.support.browser_support import SHOTS, browser, click, server, wait_for_page, wait_text  # noqa: F401

pytestmark = pytest.mark.browser


def test_classify_keeps_the_rest_of_the_page(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{server}/text")
    assert wait_for_page(browser).startswith("Text")
    click(browser, "Generation")
    click(browser, "Story")
    wait_text(browser, "city made of glass")
    click(browser, "Sentiment")
    click(browser, "Happy")
    click(browser, "Classify")
    wait_text(browser, "Texts/s")
    wait_for_page(browser)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Device:" in body and "Models available here" in body, "the sidebar is gone after the click"
    browser.find_element(By.XPATH, "//*[text()='Models available here']").click()
    wait_text(browser, "MiniLM embeddings")
    browser.save_screenshot(str(SHOTS / "text-classify-fragment.png"))
    click(browser, "Generation")
    prompt = browser.find_element(By.CSS_SELECTOR, ".st-key-generation_prompt textarea")
    assert prompt.get_attribute("value").startswith("Once upon a time, in a city made of glass")
