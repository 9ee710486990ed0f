"""Browser-test support: `streamlit run app.py` on loopback and headless Chromium, with page helpers.

Test modules import the fixtures (``from tests.support.browser_support import server, browser``) and the helpers.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("UBT_SCREENSHOT_DIR", "/tmp/ubt-screenshots"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    # no file watcher, as in production: a file touched during the run must not hold a "Source file changed"
    # prompt in the status widget, which wait_for_page would read as a page still running
    env = {**os.environ, "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS": "full", "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    log = open(tmp_path_factory.mktemp("server") / "streamlit.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        log.seek(0)
        pytest.fail("streamlit did not start:\n" + log.read())
    yield url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:  # a model still running in a script thread can hold it up
        proc.kill()
        proc.wait(10)
    log.seek(0)
    assert "Traceback" not in log.read(), "the server logged a traceback"


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("Debian chromium + chromium-driver are not installed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, kept with a blank page
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


BLANK_RELOAD_S = 60  # a page still blank (not even Streamlit's frame) after this long is loaded again, once
RELOADS: list[str] = []  # each reload wait_for_page made: a reloaded page is a new Streamlit session


def _keep_blank_page(driver) -> str:
    """Save what a blank page had (screenshot, the page's HTML, the browser console) under SHOTS; their name stem."""
    stem = SHOTS / f"blank-{time.strftime('%H%M%S')}"
    driver.save_screenshot(f"{stem}.png")
    Path(f"{stem}.html").write_text(driver.page_source)
    Path(f"{stem}.console.txt").write_text("\n".join(str(entry) for entry in driver.get_log("browser")))
    return stem.name


def _server_answers(url: str) -> str:
    """Whether the Streamlit server behind ``url`` answers its health check now (for a failure message)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/_stcore/health", timeout=5)
        return "answers"
    except OSError as err:
        return f"does not answer ({err})"


def wait_for_page(driver, timeout=240, quiet_s=1.5):  # generous: CI shares 2 cores with the server
    """Wait until the page has a title and its content has stopped changing for ``quiet_s``.

    A page that is still blank after :data:`BLANK_RELOAD_S` (headless Chromium, rarely, keeps a white page
    after navigating away from a heavy one) is loaded again once; what the server said is kept for the message.
    """
    from selenium.webdriver.common.by import By

    start = time.monotonic()
    deadline = start + timeout
    last, since, reloaded = None, start, ""
    while time.monotonic() < deadline:
        titles = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMainBlockContainer'] h1")
        running = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
        snapshot = driver.find_element(By.TAG_NAME, "body").text
        if not snapshot.strip() and not reloaded and time.monotonic() - start > BLANK_RELOAD_S:
            SHOTS.mkdir(parents=True, exist_ok=True)
            reloaded = (f"blank after {BLANK_RELOAD_S} s (kept as {_keep_blank_page(driver)}.*), loaded again; "
                        f"the server {_server_answers(driver.current_url)}")
            RELOADS.append(f"{driver.current_url}: {reloaded}")
            with open(SHOTS / "reloads.log", "a") as log:  # kept for whoever reads the CI machine afterwards
                log.write(f"{time.strftime('%H:%M:%S')} {RELOADS[-1]}\n")
            driver.refresh()
            continue
        if snapshot != last or running or not titles:
            last, since = snapshot, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return titles[0].text
        time.sleep(0.25)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"not-rendered-{int(time.time())}.png"
    driver.save_screenshot(str(shot))
    status = " | ".join(e.text for e in running) or "none"
    raise AssertionError(f"page did not finish rendering in {timeout} s (status widget: {status}; title found: "
                         f"{bool(titles)}; {reloaded or 'not reloaded'}; the server {_server_answers(driver.current_url)}; "
                         f"screenshot {shot}); the page's last text:\n{(last or '')[-1500:]}")


def click(driver, text, timeout=30, selector="button, [role='tab']"):
    """Click the first element matching ``selector`` whose text is ``text``, once it appears."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for element in driver.find_elements(By.CSS_SELECTOR, selector):
            if element.text.strip() == text:
                element.click()
                return
        time.sleep(0.25)
    raise AssertionError(f"no {selector!r} element {text!r} appeared in {timeout} s")


def wait_text(driver, needle, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in driver.find_element("tag name", "body").text:
            return
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} did not appear in {timeout} s")
