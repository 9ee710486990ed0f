"""The number format is a dimension of every result, like the engine: the card shows it, the run store keeps it and
Summary tables it (fp32, bf16, int8)."""
import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from tests.support.apptest import summary_page, table


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(path))
    return path


def card_script(number_format: str, device: str) -> None:
    """A page that shows one measurement's card and records it."""
    import streamlit as st

    from core.measure import Measurement
    from ui.common import record, show_measurement

    st.session_state["session_id"] = "me"
    m = Measurement(model="clip-vit-b-32", model_id="laion/CLIP-ViT-B-32-laion2B-s34B-b79K", source="hub-cache",
                    device=device, load_s=None, latency_s=0.04, peak_mb=900.0, number_format=number_format)
    show_measurement(m)
    record(m, "image-text", "zero-shot")


@pytest.mark.parametrize(("number_format", "device"), [
    ("bf16", "cpu · bfloat16 · 2 thread(s)"),
    ("fp32", "cpu · float32 · 2 thread(s)"),
    ("int8", "cpu · int8 · 2 thread(s)"),
])
def test_card_shows_the_number_format_and_the_store_keeps_it(store, number_format, device):
    at = AppTest.from_function(card_script, args=(number_format, device), default_timeout=30).run()
    assert not at.exception
    card = next(c.value for c in at.caption if "**number format**" in c.value)
    assert f"**number format** {number_format}" in card
    assert f"**engine** PyTorch (transformers), {'float32' if number_format == 'fp32' else number_format}" in card
    assert runs.fetch_runs()["number_format"].tolist() == [number_format]


def test_summary_tables_each_number_format_and_compares_with_float32(store):
    common = dict(page="image-text", task="zero-shot", model="clip-vit-b-32", source="hub-cache", session_id="me")
    runs.record_run(**common, device="cpu · float32 · 2 thread(s)", wall_s=0.08, number_format="fp32")
    runs.record_run(**common, device="cpu · bfloat16 · 2 thread(s)", wall_s=0.04, number_format="bf16")
    runs.record_run(page="fine-tune", task="images", model="small-cnn", source="none", device="cpu · bf16 autocast · 1 thread(s)",
                    approach="from scratch", kind="training", wall_s=3.0, number_format="bf16", session_id="me",
                    metrics={"accuracy": 0.9})
    at = summary_page()
    assert not at.exception
    inference = table(at, "Inference considerations").set_index(["model", "number format"])
    assert inference.loc[("clip-vit-b-32", "bf16"), "speed-up vs PyTorch (×)"] == 2.0
    assert inference.loc[("clip-vit-b-32", "fp32"), "speed-up vs PyTorch (×)"] == 1.0
    training = table(at, "Training considerations").set_index("approach")
    assert training.loc["from scratch", "number formats"] == "bf16"
