"""/text in Hosted mode in headless Chromium, against a real OpenAI-compatible server (llama.cpp's) on 127.0.0.1."""
import os
import time

import pytest

from tests.browser_support import SHOTS, browser, click, server, wait_for_page, wait_text  # noqa: F401 (fixtures)
from tests.openai_servers import llama_server
from tests.test_providers import needs_llama

pytestmark = [pytest.mark.browser, pytest.mark.real_model, needs_llama]


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory):
    """The server's URL, also as OPENAI_BASE_URL for the app (started after this, by the `server` fixture)."""
    with llama_server(log_path=tmp_path_factory.mktemp("llama") / "server.log") as url:
        before = os.environ.get("OPENAI_BASE_URL")
        os.environ["OPENAI_BASE_URL"] = url
        yield url
        if before is None:
            os.environ.pop("OPENAI_BASE_URL")
        else:
            os.environ["OPENAI_BASE_URL"] = before


def test_text_page_generates_locally_and_hosted_side_by_side(llama_url, server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/text")
    wait_for_page(browser)
    click(browser, "Generation")
    click(browser, "Haiku")
    time.sleep(1)
    click(browser, "Both, side by side")
    wait_text(browser, "Hosted endpoint")
    time.sleep(1)
    click(browser, "Generate")
    wait_text(browser, "Cost ($)", timeout=300)
    wait_text(browser, "Memory added", timeout=300)
    time.sleep(1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "text-hosted-side-by-side.png"))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "This server" in body and "Hosted API" in body and "hosted API (weights not here)" in body
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
