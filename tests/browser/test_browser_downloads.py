"""A Hub download people can watch: `streamlit run app.py` with ``HF_ENDPOINT`` set to a loopback Hub
(tests/support/hub_server.py, slowed down), the Text page in headless Chromium, a progress bar with bytes, speed and
time left while the sentiment model downloads, then the result, which says the weights came from the Hub."""
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.browser_support import ROOT, SHOTS, browser, click, free_port, wait_for_page, wait_text  # noqa: F401 (fixtures)
from tests.support.hub_server import HubServer, sentiment_repo

pytestmark = pytest.mark.browser
REPO = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"


@pytest.fixture(scope="module")
def hub_app(tmp_path_factory):
    """The app on loopback, online, its Hub a slow loopback server holding the default sentiment model."""
    work = tmp_path_factory.mktemp("hub-app")
    with HubServer({REPO: sentiment_repo(work / "repo")}, chunk_delay_s=0.3) as hub:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("UBT_MODEL_DIR", "HF_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="0", UBT_OFFLINE="0",
                   UBT_DATA_DIR=str(work / "data"), UBT_RUNS_DB=str(work / "runs.sqlite"))
        log = open(work / "streamlit.log", "w+")
        # huggingface_hub reports progress every 10 MB read; every 64 KiB here, so a 1.7 MB file moves the bar.
        launch = ("import sys; import huggingface_hub.constants as c; c.DOWNLOAD_CHUNK_SIZE = 64 * 1024; "
                  "from streamlit.web.cli import main; sys.argv = ['streamlit', *sys.argv[1:]]; main()")
        proc = subprocess.Popen(
            [sys.executable, "-c", launch, "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    log.seek(0)
                    pytest.fail("streamlit did not start:\n" + log.read())
                time.sleep(0.3)
        yield url, hub
        proc.terminate()
        proc.wait(10)
        log.seek(0)
        assert "Traceback" not in log.read(), "the server logged a traceback"


def test_first_use_of_a_hub_model_shows_its_download_then_the_result(hub_app, browser):
    from selenium.webdriver.common.by import By

    url, hub = hub_app
    browser.get(f"{url}/text")
    wait_for_page(browser)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "text-hub-before.png"))  # the picker offers DistilBERT from the Hub first
    click(browser, "Happy")
    time.sleep(1)
    click(browser, "Classify")
    wait_text(browser, "Downloading DistilBERT fine-tuned on SST-2:", timeout=60)
    time.sleep(2)  # a few chunks later: a speed and the time left are known
    bar = browser.find_element(By.CSS_SELECTOR, "[data-testid='stMainBlockContainer'] [data-testid='stProgress']")
    browser.save_screenshot(str(SHOTS / "text-hub-download.png"))
    assert " MB/s" in bar.text and " left" in bar.text and " of 1.7 MB" in bar.text, bar.text
    wait_text(browser, "Peak memory", timeout=120)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Hub (download)" in body and "Load (first use)" in body  # the result card says where it came from
    browser.save_screenshot(str(SHOTS / "text-hub-downloaded.png"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    assert not [r for r in hub.requests if r.method == "GET" and r.path.endswith(("pytorch_model.bin", "tf_model.h5", "model.onnx"))]
