"""In Chromium: Summary shows the engine of every run (same model, faster engine) in its charts and tables.
Screenshot in SHOTS."""
import os

import pytest

from core import runs
from tests.support.browser_support import SHOTS, browser, server, wait_for_page, wait_text  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with SmolLM2 on PyTorch and llama.cpp, MiniLM on both encoder engines, faster-whisper on
    CTranslate2, a hosted call and a scored training run; the server started after it reads it."""
    before = os.environ.get(runs.RUNS_DB_ENV)
    os.environ[runs.RUNS_DB_ENV] = str(tmp_path_factory.mktemp("store") / "runs.sqlite")
    text = dict(page="text", source="package", device="cpu", peak_mb=900.0, added_mb=60.0)
    for wall_s in (2.6, 2.9, 3.1):
        runs.record_run(**text, task="generation", model="smollm2-135m", wall_s=wall_s, engine="torch")
    for wall_s in (0.45, 0.5):
        runs.record_run(**text, task="generation", model="smollm2-135m", wall_s=wall_s, engine="llama.cpp")
    for wall_s, engine in ((0.012, "torch"), (0.011, "torch"), (0.0044, "onnxruntime"), (0.0046, "onnxruntime")):
        runs.record_run(**text, task="sentiment", model="minilm-sentiment", wall_s=wall_s, engine=engine)
    runs.record_run(page="speech", task="transcription", model="faster-whisper-tiny-en", source="package",
                    device="cpu · int8 · 2 thread(s)", wall_s=0.9, engine="ctranslate2")
    runs.record_run(page="text", task="generation", model="openai-compatible/m", source="hosted",
                    device="hosted: server", approach="call an API", wall_s=0.8, api_cost_usd=0.0004, engine="hosted")
    for wall_s, engine, f1 in ((1.9, "torch", 0.71), (0.8, "onnxruntime", 0.71)):
        runs.record_run(page="fine-tune", task="sentiment", model="minilm-l6", source="package", device="cpu",
                        wall_s=wall_s, metrics={"macro_f1": f1}, engine=engine, data_source="example: sentiment")
    runs.record_run(page="fine-tune", task="sentiment", model="minilm-l6", source="package", device="cpu",
                    kind="training", approach="transfer learning", wall_s=14.0, params={"train_examples": 200},
                    metrics={"macro_f1": 0.84}, engine="torch", data_source="example: sentiment")
    runs.record_run(page="fine-tune", task="sentiment", model="openai-compatible/m", source="hosted",
                    device="hosted: server", kind="training", approach="call an API", wall_s=0.0,
                    params={"test_examples": 40}, metrics={"accuracy": 0.8, "latency_per_example_s": 0.3},
                    engine="hosted", data_source="example: sentiment")  # trained nothing: drawn at 12 s of calls
    yield
    if before is None:
        os.environ.pop(runs.RUNS_DB_ENV)
    else:
        os.environ[runs.RUNS_DB_ENV] = before


def test_summary_shows_the_engine_of_every_run(store, server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1400, 2600)
    browser.get(f"{server}/summary")
    assert wait_for_page(browser).startswith("Summary")
    wait_text(browser, "speed-up vs PyTorch")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "llama.cpp" in body and "onnxruntime" in body and "ctranslate2" in body and "hosted" in body
    assert len(browser.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] canvas, "
                                                       "[data-testid='stVegaLiteChart'] svg")) >= 2
    browser.save_screenshot(str(SHOTS / "summary-engines.png"))
    # every run with a quality figure is drawn, the API arm at its held-out calls, and none is said to be left out
    caption = next((line for line in body.splitlines() if "runs have a quality figure" in line), "")
    assert "4 of 15 runs have a quality figure" in caption and "An approach that trained nothing counts its held-out" in caption, caption
    assert "Not drawn" not in body
