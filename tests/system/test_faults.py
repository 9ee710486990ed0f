"""Faults injected into a working app: each must leave the rest of the app working and, where a person
is affected, show a clear message instead of a traceback.

Pages run in streamlit's AppTest (same process, so faults can be put in place); the training fault
runs a real fine-tune job on a tiny encoder. Each test records ``fault`` (what was injected) for
scripts/reliability_report.py.
"""
from __future__ import annotations

import itertools
import os
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import registry, runs
from core.runs import sql as runs_sql
from core.catalog import get_spec
from core.config import get_settings
from tests.support import tiny
from tests.support.apptest import app_at
from tests.support.serve_tiny import TINY_CHECKPOINTS, page_script

SENTIMENT = "distilbert-sst2"
TEXT = "I love this movie, the cast is wonderful."


# --- helpers ---------------------------------------------------------------------------------------
@pytest.fixture
def model_dir(tmp_path, fresh_cache):
    """``UBT_MODEL_DIR`` pointing at an empty folder, with settings re-read before and after."""
    folder = tmp_path / "models"
    folder.mkdir()
    before = {name: os.environ.get(name) for name in ("UBT_MODEL_DIR",)}
    os.environ["UBT_MODEL_DIR"] = str(folder)
    get_settings.cache_clear()
    yield folder
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


@pytest.fixture
def run_store(tmp_path, monkeypatch) -> Path:
    """A private run store for the test."""
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(path))
    return path


def checkpoint(model_dir: Path, key: str = SENTIMENT) -> Path:
    """Write the tiny checkpoint of ``key`` where a downloaded one would be, and return its folder."""
    folder = model_dir / get_spec(key).hub_id
    TINY_CHECKPOINTS[key](folder)
    return folder


def open_page(url_path: str) -> AppTest:
    at = app_at(page_script(url_path), 90)
    return at.run()


def classify(at: AppTest, text: str = TEXT, key: str = SENTIMENT) -> AppTest:
    at.selectbox(key="sentiment_model").select(get_spec(key)).run()
    at.text_area(key="sentiment_text").input(text)
    return at.button(key="sentiment_run").click().run()


def messages(at: AppTest) -> str:
    return "\n".join(e.value for e in [*at.error, *at.warning])


def assert_classified(at: AppTest) -> None:
    assert not at.exception and not at.error, messages(at)
    assert at.metric[0].label == "Label" and at.metric[0].value in {"Positive", "Negative"}


def assert_page_works(url_path: str) -> None:
    at = open_page(url_path)
    assert not at.exception, at.exception[0].value
    assert at.title and at.title[0].value


# --- model faults ----------------------------------------------------------------------------------
def _garbage(folder: Path) -> None:
    (folder / "config.json").write_text("{ this is not json")
    (folder / "model.safetensors").write_bytes(os.urandom(4096))


def _cut_short(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


@pytest.mark.parametrize("damage, what", [
    (_garbage, "corrupt weights (garbage config.json and model.safetensors in a local folder)"),
    (_cut_short, "corrupt weights (model.safetensors cut in half, as by an interrupted download)"),
], ids=["garbage", "cut-short"])
def test_corrupt_weights_get_a_clear_message_and_the_app_recovers(model_dir, damage, what, record_property):
    record_property("fault", what)
    folder = checkpoint(model_dir)
    damage(folder)
    at = classify(open_page("text"))
    assert not at.exception
    assert any("could not be loaded from local folder" in w.value and str(folder) in w.value for w in at.warning), messages(at)
    assert SENTIMENT not in {loaded.spec.key for loaded in registry.CACHE.snapshot()}  # nothing half-loaded is kept
    assert_page_works("summary")
    for child in folder.iterdir():  # the person replaces the damaged copy
        child.unlink()
    folder.rmdir()
    checkpoint(model_dir)
    assert_classified(classify(at))


def test_missing_weights_file_gets_a_clear_message_and_the_app_recovers(model_dir, record_property):
    record_property("fault", "missing weights file (a local folder without model.safetensors)")
    folder = checkpoint(model_dir)
    weights = folder / "model.safetensors"
    saved = weights.read_bytes()
    weights.unlink()
    at = classify(open_page("text"))
    assert not at.exception
    assert any("could not be loaded from local folder" in w.value and str(folder) in w.value for w in at.warning), messages(at)
    assert_page_works("summary")
    weights.write_bytes(saved)
    assert_classified(classify(at))


def test_hub_offline_says_which_model_and_how_to_get_it(model_dir, record_property):
    record_property("fault", "Hub unreachable (offline mode, no local copy)")
    at = classify(open_page("text"))
    assert not at.exception and not at.error
    text = messages(at)
    assert "DistilBERT fine-tuned on SST-2 is not available on this machine" in text
    assert "distilbert/distilbert-base-uncased-finetuned-sst-2-english" in text and "UBT_MODEL_DIR" in text
    assert_page_works("summary")


def test_hub_host_refusing_connections_is_an_unavailable_model_not_a_hang(model_dir, monkeypatch, record_property):
    record_property("fault", "Hub unreachable (online mode, the host refuses connections)")
    for name in ("HF_HUB_OFFLINE", "UBT_OFFLINE"):
        monkeypatch.setenv(name, "0")
    monkeypatch.setenv("UBT_HUB_TIMEOUT_S", "1")
    get_settings.cache_clear()
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1")  # port 443 on loopback: refused at once
    monkeypatch.setattr(registry.sources, "_probe_results", {})
    assert not get_settings().offline
    at = classify(open_page("text"))
    assert not at.exception and not at.error
    assert "is not available on this machine" in messages(at)


def test_model_larger_than_the_budget_gets_model_too_large(model_dir, monkeypatch, record_property):
    record_property("fault", "model larger than the memory budget")
    checkpoint(model_dir)
    budget = registry.CACHE.budget_mb
    monkeypatch.setattr(registry.CACHE, "budget_mb", 50)
    at = classify(open_page("text"))
    assert not at.exception
    assert at.error and "needs about 300 MB but the memory budget is 50 MB" in at.error[0].value, messages(at)
    assert "UBT_MEMORY_BUDGET_MB" in at.error[0].value
    monkeypatch.setattr(registry.CACHE, "budget_mb", budget)
    assert_classified(classify(at))


# --- run store faults ------------------------------------------------------------------------------
def test_locked_run_store_keeps_the_page_working_and_loses_no_run(model_dir, run_store, monkeypatch, record_property):
    record_property("fault", "run store locked by another writer")
    checkpoint(model_dir)
    monkeypatch.setattr(runs_sql, "BUSY_TIMEOUT_S", 0.05)
    at = classify(open_page("text"))
    assert_classified(at)
    blocker = sqlite3.connect(run_store, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assert_classified(classify(at, "Never buying from them again."))
        summary = open_page("summary")
        assert not summary.exception
        assert any("busy" in info.value and "1 run(s) in memory" in info.value for info in summary.info)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert_classified(classify(at, "Delivery was on time."))
    stored = runs.fetch_runs()
    record_property("runs_recorded", 3)
    record_property("runs_found", len(stored))
    assert len(stored) == 3 and (stored["id"] > 0).all()  # the held run was saved with the next one
    assert runs.store_status() == ""


def test_corrupt_run_store_is_moved_aside_and_the_pages_keep_working(model_dir, run_store, record_property):
    record_property("fault", "run store file corrupt")
    checkpoint(model_dir)
    run_store.write_bytes(b"not a database at all " * 200)
    at = classify(open_page("text"))
    assert_classified(at)
    assert len(list(run_store.parent.glob(run_store.name + ".corrupt-*"))) == 1
    summary = open_page("summary")
    assert not summary.exception
    assert any("moved it aside" in info.value for info in summary.info)
    record_property("runs_recorded", 1)
    record_property("runs_found", len(runs.fetch_runs()))
    assert len(runs.fetch_runs()) == 1


# --- training fault ---------------------------------------------------------------------------------
def test_training_that_raises_half_way_releases_the_slot(fresh_cache, run_store, monkeypatch, record_property):
    record_property("fault", "training job raising half-way (optimiser step 3 of a real fine-tune)")
    import torch

    from core.finetune import arms, data, features, jobs, training

    registry.install("minilm-l6", tiny.bert_encoder())
    features.FEATURES.clear()
    labelled = data.example_sentiment()
    train, test = data.split(labelled)
    settings = arms.FineTuneSettings(top_layers=1, epochs=2, batch_size=8)
    steps = itertools.count(1)
    real_step = torch.optim.AdamW.step

    def failing_step(self, *args, **kwargs):
        if next(steps) == 3:
            raise RuntimeError("simulated out-of-memory at optimiser step 3")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", failing_step)
    crashed = training.start_training(labelled, train, test, {"fine-tune": settings}, session_id="crashed")
    assert crashed.join(300)
    state = crashed.snapshot()[0]
    assert state.status == "error" and "simulated out-of-memory" in state.error
    assert len(state.curve) >= 2  # it had trained (and reported) before failing
    assert not jobs.SLOT.busy()
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)

    again = training.start_training(labelled, train, test, {"fine-tune": settings}, session_id="again")
    assert again.join(300)
    assert again.snapshot()[0].status == "done" and not jobs.SLOT.busy()
    stored = runs.fetch_runs()
    record_property("runs_recorded", 1)
    record_property("runs_found", len(stored))
    assert stored["session_id"].tolist() == ["again"]  # the failed arm left no half-made run behind
    features.FEATURES.clear()
