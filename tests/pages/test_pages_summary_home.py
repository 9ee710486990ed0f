"""Summary and Home pages through streamlit's AppTest, on private run stores."""
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import runs
from tests.support.apptest import summary_page, table

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = str(ROOT / "app_pages" / "summary.py")
HOME = str(ROOT / "app_pages" / "home.py")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A private, empty run store."""
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv(runs.RUNS_DB_ENV, str(path))
    return path


@pytest.fixture
def seeded(store):
    """Runs from two sessions: mine ("me") used a model; someone else scored and trained one on two data sets."""
    runs.record_run(page="text", task="sentiment", model="distilbert-sst2", source="hub", device="cpu",
                    load_s=3.0, wall_s=0.05, peak_mb=400.0, added_mb=270.0, session_id="me")
    runs.record_run(page="text", task="generation", model="smollm2-135m", source="package", device="cpu",
                    wall_s=1.2, peak_mb=700.0, params={"max_new_tokens": 32}, session_id="me")
    runs.record_run(page="fine-tune", task="sentiment", model="minilm-l6", source="package", device="cpu",
                    wall_s=2.0, peak_mb=300.0, added_mb=25.0, metrics={"accuracy": 0.70}, session_id="other",
                    data_fingerprint=runs.fingerprint("b"), data_source="example: sentiment")
    runs.record_run(page="fine-tune", task="sentiment", model="minilm-l6", source="package", device="cpu",
                    kind="training", approach="transfer learning", wall_s=36.0, peak_mb=900.0, added_mb=140.0,
                    params={"train_examples": 200}, metrics={"accuracy": 0.86, "macro_f1": 0.85}, session_id="other",
                    data_fingerprint=runs.fingerprint("a"), data_source="upload: reviews.csv")
    return store


# --- Summary ----------------------------------------------------------------------------------


def test_summary_explains_an_empty_store(store):
    at = summary_page()
    assert not at.exception
    assert "No runs recorded on this server yet" in at.info[0].value
    assert any("Fine-tune" in m.value for m in at.markdown)  # outside the app's navigation: plain text
    assert not at.get("vega_lite_chart") and not at.table


def test_summary_with_runs(seeded):
    at = summary_page()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 2  # effort-impact and latency
    assert [s.value for s in at.subheader] == ["Effort against impact", "Training considerations",
                                               "Inference considerations"]
    training = table(at, "Training considerations").set_index("approach")
    assert training.loc["transfer learning", "data needed (examples)"] == 200
    assert training.loc["transfer learning", "best macro-F1"] == 0.85
    inference = table(at, "Inference considerations")
    assert set(inference["model"]) == {"distilbert-sst2", "smollm2-135m", "minilm-l6"}
    assert at.download_button(key="summary_download")
    assert not at.info  # the store is fine: no note
    reference = next(c.value for c in at.caption if "Train-from-scratch reference" in c.value)
    assert "377 s" in reference and "800 steps" in reference  # read from assets/digits_diffusion/training.json


def test_summary_tables_wrap_to_the_page_width(seeded):
    """A scrolling dataframe cut its right-hand columns at a 1400 px window; a static table wraps instead."""
    at = summary_page()
    assert not at.dataframe
    assert len(at.table) == 2
    assert {"memory added (MB)", "process peak (MB)", "$ per 1,000 calls"} <= set(table(at, "Inference considerations"))


def test_summary_labels_memory_added_apart_from_the_process_peak(seeded):
    at = summary_page()
    training = table(at, "Training considerations").set_index("approach")
    assert training.loc["use as is", "memory added (MB)"] == 270.0  # the most one run added, its load included
    assert training.loc["use as is", "process peak (MB)"] == 700.0  # the whole server, other models included
    assert training.loc["transfer learning", "memory added (MB)"] == 140.0
    inference = table(at, "Inference considerations").set_index("model")
    assert pd.isna(inference.loc["smollm2-135m", "memory added (MB)"])  # not measured: left empty, not zero
    note = next(c.value for c in at.caption if c.value.startswith("**Memory added**"))
    assert "**Process peak**" in note and "not what the approach needs" in note


def test_summary_filters_by_data(seeded):
    at = summary_page()
    options = at.selectbox(key="summary_data").options
    assert options == ["all data", "example: sentiment · 3e23e816", "page input (not stored)",
                       "upload: reviews.csv · ca978112"]
    at.selectbox(key="summary_data").set_value("upload: reviews.csv · ca978112").run()
    assert not at.exception
    training = table(at, "Training considerations").set_index("approach")
    assert training["runs"].to_dict() == {"call an API": 0, "use as is": 0, "prompt with examples": 0,
                                          "transfer learning": 1, "fine-tune": 0, "from scratch": 0}
    assert table(at, "Inference considerations").empty
    assert len(at.get("vega_lite_chart")) == 1  # effort-impact only: no inference runs on this data
    at.selectbox(key="summary_data").set_value("page input (not stored)").run()
    assert set(table(at, "Inference considerations")["model"]) == {"distilbert-sst2", "smollm2-135m"}


def test_summary_rates_change_the_costs(seeded):
    at = summary_page()
    before = table(at, "Training considerations").set_index("approach")
    at.number_input(key="rate_cpu").set_value(1.0).run()
    after = table(at, "Training considerations").set_index("approach")
    assert before.loc["transfer learning", "median training cost ($)"] == pytest.approx(36 / 3600 * 0.10)
    assert after.loc["transfer learning", "median training cost ($)"] == pytest.approx(36 / 3600 * 1.0)


def test_summary_filters_by_session_and_task(seeded):
    at = summary_page()
    at.segmented_control(key="summary_scope").set_value("this session").run()
    assert not at.exception
    assert set(table(at, "Inference considerations")["model"]) == {"distilbert-sst2", "smollm2-135m"}
    assert "None of these runs has a quality figure yet" in at.info[0].value
    at.selectbox(key="summary_task").set_value("generation").run()
    assert table(at, "Inference considerations")["model"].tolist() == ["smollm2-135m"]


def test_summary_session_without_runs(seeded):
    at = summary_page(session="newcomer")
    at.segmented_control(key="summary_scope").set_value("this session").run()
    assert "No runs recorded in this session yet" in at.info[0].value


def test_summary_effort_in_dollars(seeded):
    at = summary_page()
    at.segmented_control(key="summary_effort").set_value("dollars").run()
    assert not at.exception
    chart = at.get("vega_lite_chart")[0].proto.spec
    assert '"effort_usd"' in chart and '"log"' in chart


def test_summary_shows_the_store_note(store):
    store.write_bytes(b"junk, not a database" * 50)
    runs.record_run(page="text", task="sentiment", model="distilbert-sst2", source="hub", device="cpu", wall_s=0.1)
    at = summary_page()
    assert not at.exception
    assert "moved it aside" in at.info[0].value
    assert sqlite3.connect(store).execute("SELECT count(*) FROM runs").fetchone()[0] == 1


# --- Home -------------------------------------------------------------------------------------


def home_page() -> AppTest:
    return AppTest.from_file(HOME, default_timeout=30).run()


def test_home_asks_before_it_recommends(store):
    at = home_page()
    assert not at.exception
    assert at.title[0].value == "Use before you train"
    assert not at.success
    assert "Answer the questions" in at.caption[-1].value
    assert [w.key for w in at.segmented_control] == ["guide_model"]


@pytest.mark.parametrize(
    ("answers", "verdict", "page"),
    [
        ({"guide_model": "No"}, "Train, starting from what exists", "Fine-tune"),
        ({"guide_model": "Not sure"}, "Look before you build", "Text"),
        ({"guide_model": "Yes", "guide_works": "Yes"}, "Use it as is", "Text"),
        ({"guide_model": "Yes", "guide_works": "Not tested yet"}, "Test it on your input first", "Text"),
        ({"guide_model": "Yes", "guide_works": "No", "guide_fix": "Yes"}, "Use it, with a prompt, wrapper or UI", "Text"),
        ({"guide_model": "Yes", "guide_works": "No", "guide_fix": "Not sure"}, "Try a prompt or wrapper first", "Text"),
        ({"guide_model": "Yes", "guide_works": "No", "guide_fix": "No"}, "Adapt it: transfer learning", "Fine-tune"),
    ],
)
def test_home_guide_recommends(store, answers, verdict, page):
    at = home_page()
    for key, value in answers.items():  # each answer reveals the next question
        at.segmented_control(key=key).set_value(value).run()
    assert not at.exception
    assert at.success[0].value.startswith(f"**{verdict}")
    assert any(f"**Open {page}**" in m.value for m in at.markdown)


@pytest.mark.parametrize("fix", ["Yes", "Not sure"])
def test_home_guide_sends_a_prompt_fix_to_the_prompt_arm(store, fix):
    """"Could a prompt fix the gap?" -> the Fine-tune page's "prompt with examples" arm, for text."""
    at = home_page()
    for key, value in {"guide_model": "Yes", "guide_works": "No", "guide_fix": fix}.items():
        at.segmented_control(key=key).set_value(value).run()
    assert not at.exception
    assert "prompt with examples" in at.success[0].value
    assert "**Open Fine-tune: prompt with examples**" in at.markdown[-1].value
    at.selectbox(key="guide_task").set_value("Label or caption images").run()  # the prompt arm classifies text only
    assert not any("prompt with examples" in m.value for m in at.markdown)


def test_home_prompt_link_opens_fine_tune_with_the_prompt_arm(store):
    from core.guide import advise

    advice = advise("Classify or generate text", "Yes", "No", "Yes")
    assert advice.also.page == "app_pages/fine_tune.py" and advice.also.query == {"arm": "prompt"}
    assert advise("Transcribe speech", "Yes", "No", "Yes").also is None


def test_home_guide_offers_calling_an_api_where_a_model_works(store):
    at = home_page()
    at.segmented_control(key="guide_model").set_value("Yes").run()
    at.segmented_control(key="guide_works").set_value("Yes").run()
    assert "call an API" in at.success[0].value and "per 1,000 calls" in at.success[0].value


def test_home_guide_follows_the_task(store):
    at = home_page()
    at.selectbox(key="guide_task").set_value("Transcribe speech").run()
    at.segmented_control(key="guide_model").set_value("Not sure").run()
    assert "Speech page" in at.success[0].value
    assert "**Open Speech**" in at.markdown[-1].value


def test_home_links_resolve_inside_the_app(store, tmp_path):
    """Under st.navigation (as app.py routes it) the guide's answer is a real page link."""
    pages = tmp_path / "app_pages"
    pages.mkdir()
    shutil.copy(HOME, pages / "home.py")
    names = ["text", "image_text", "speech", "image_generation", "fine_tune", "summary"]
    for name in names:
        (pages / f"{name}.py").write_text("import streamlit as st\nst.write('stub')\n")
    (tmp_path / "app.py").write_text(
        "import streamlit as st\n"
        "pages = [st.Page('app_pages/home.py', default=True)]\n"
        f"pages += [st.Page(f'app_pages/{{n}}.py', url_path=n.replace('_', '-')) for n in {names!r}]\n"
        "st.navigation(pages).run()\n"
    )
    at = AppTest.from_file(str(tmp_path / "app.py"), default_timeout=30).run()
    at.segmented_control(key="guide_model").set_value("No").run()
    assert not at.exception
    links = {link.value: link.proto.page_script_hash for link in at.get("page_link")}
    assert set(links) == {"Open Fine-tune", "Summary: effort against impact for every run measured here"}
    assert all(links.values())
    assert not any("navigation" in m.value for m in at.markdown)  # no plain-text fallback


def test_home_imports_nothing_heavy():
    """Home paints fast: no torch, transformers or pandas on the way."""
    script = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({HOME!r}).run()\n"
        "assert not at.exception\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'core.runs') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(("task", "page", "what"), [("Transcribe speech", "Speech", "fine-tuning Whisper"),
                                                     ("Generate images from text", "Image generation", "diffusion model")])
def test_home_guide_does_not_send_speech_or_image_generation_to_fine_tune(store, task, page, what):
    for answers in ({"guide_model": "No"}, {"guide_model": "Yes", "guide_works": "No", "guide_fix": "No"}):
        at = home_page()
        at.selectbox(key="guide_task").set_value(task).run()
        for key, value in answers.items():
            at.segmented_control(key=key).set_value(value).run()
        assert not at.exception
        assert what in at.success[0].value and "this app does not" in at.success[0].value
        assert f"**Open {page}**" in at.markdown[-1].value and "Fine-tune" not in at.markdown[-1].value
