"""The Fine-tune page through streamlit AppTest, with the tiny BERT installed as "minilm-l6"."""
import io
import zipfile

import pytest
from PIL import Image

from core import registry, runs
from core.errors import ModelUnavailable
from core.finetune import features as feats
from tests.support import tiny
from tests.support.apptest import JOB_WAIT_S, fine_tune_page, problems, run_and_wait, table_with



@pytest.fixture
def page(fresh_cache):
    registry.install("minilm-l6", tiny.bert_encoder())
    with fine_tune_page() as at:
        yield at


def _only(at, *arms: str) -> None:
    for arm in ("zero_shot", "transfer", "fine_tune", "scratch"):
        at.checkbox(key=f"ft_use_{arm}").set_value(arm in arms)


def test_page_shows_the_example_data_and_the_arms(page):
    assert not problems(page)
    assert page.title[0].value.startswith("Fine-tune")
    assert page.radio(key="ft_source").value.startswith("Example: product-review sentiment")
    assert {c.key for c in page.checkbox} >= {"ft_use_zero_shot", "ft_use_transfer", "ft_use_fine_tune", "ft_use_scratch"}
    assert "266 texts · 2 classes" in " ".join(c.value for c in page.caption)
    assert any("held-out examples" in c.value for c in page.caption)


def test_transfer_arm_runs_in_the_background_and_shows_results(page):
    _only(page, "transfer")
    page.run()
    run_and_wait(page)
    assert not problems(page)
    verdict = page.success[0].value
    result = page.session_state["ft_job"].results()["transfer"]
    assert f"Transfer learning reached {result.accuracy:.0%}" in verdict
    table = table_with(page, "arm")
    assert list(table["arm"]) == ["Transfer learning (frozen features + head)"]
    assert page.get("download_button")  # the head can be exported
    assert any("weight" in c.value and "safetensors" in c.value for c in page.code)
    stored = runs.fetch_runs(session_id=page.session_state["session_id"])
    assert list(stored["approach"]) == ["transfer learning"] and list(stored["kind"]) == ["training"]


def test_api_arm_against_a_recorded_server_is_scored_priced_and_stored(page):
    from tests.support.openai_servers import RecordedServer, recorded_stream

    assert page.checkbox(key="ft_use_api").value is False  # paid calls: opt in
    _only(page, "transfer")
    page.checkbox(key="ft_use_api").set_value(True).run()
    with RecordedServer([recorded_stream(["positive"], prompt_tokens=30)]) as server:
        page.text_input(key="ft_api_openai-compatible_base_url").set_value(server.url)
        page.text_input(key="ft_api_api_key").set_value("sk-PLANTED-page")
        page.number_input(key="ft_api_p_in").set_value(1.0)
        page.run()
        run_and_wait(page)
    assert not problems(page)
    result = page.session_state["ft_job"].results()["api"]
    assert result.test_examples == len(server.requests) and result.params["cost_usd"] > 0
    assert "Calling openai-compatible/local-model scored" in page.success[0].value
    table = table_with(page, "arm")
    assert list(table["arm"]) == ["Transfer learning (frozen features + head)", "Call an API (hosted LLM, zero-shot)"]
    assert table["$ per 1,000 items"].iloc[1] == pytest.approx(result.params["cost_per_1000_usd"])
    stored = runs.fetch_runs(session_id=page.session_state["session_id"])
    api_row = stored[stored["approach"] == "call an API"].iloc[0]
    assert api_row["api_cost_usd"] == pytest.approx(result.params["cost_usd"])
    assert "sk-PLANTED-page" not in stored.to_csv()


def test_trained_head_classifies_new_text_on_the_page(page):
    _only(page, "transfer")
    page.checkbox(key="ft_label_curve").set_value(False)
    page.run()
    run_and_wait(page)
    page.text_area(key="ft_predict_text").input("great product\nterrible, broke at once").run()
    page.button(key="ft_predict_run").click().run()
    assert not problems(page)
    predictions = table_with(page, "probability")
    assert len(predictions) == 2 and set(predictions["label"]) <= {"negative", "positive"}


def test_classify_with_the_head_waits_its_turn_and_says_so(page, monkeypatch):
    """While another session's model call holds the server's one turn, Classify says where it waits, then runs."""
    import threading

    from streamlit.delta_generator import DeltaGenerator

    import ui.queue
    from core.queue import TurnQueue
    from tests.support.turns import Holder, wait_until

    _only(page, "transfer")
    page.checkbox(key="ft_label_curve").set_value(False)
    page.run()
    run_and_wait(page)
    line, shown, original_info = TurnQueue(1), [], DeltaGenerator.info
    monkeypatch.setattr(DeltaGenerator, "info", lambda self, body, *a, **k: (shown.append(body),
                                                                                original_info(self, body, *a, **k))[1])
    monkeypatch.setattr(ui.queue, "line", lambda: line)
    holder = Holder(line, "generate", [])
    wait_until(line, ("generate",), ())
    threading.Thread(target=lambda: (wait_until(line, ("generate",), ("classify",)), holder.finish()),
                     daemon=True).start()
    page.text_area(key="ft_predict_text").input("great product").run()
    page.button(key="ft_predict_run").click().run()
    assert not problems(page)
    assert [s for s in shown if s.startswith("Queued")] == ["Queued: 1st in line behind 1 generate. Model calls take "
                                                            "turns on this server, for everyone, so each runs at full "
                                                            "speed; yours starts by itself."]
    assert len(table_with(page, "probability")) == 1 and line.snapshot() == ((), ())
    assert not any(i.value.startswith("Queued") for i in page.info)  # cleared once served


def test_stop_button_stops_a_fine_tune(page):
    _only(page, "fine_tune")
    page.slider(key="ft_ft_epochs").set_value(10)
    page.run()
    page.button(key="ft_run").click().run()
    job = page.session_state["ft_job"]
    page.button(key="ft_stop").click().run()  # offered while the job runs (10 epochs take far longer than a rerun)
    assert job.join(JOB_WAIT_S)
    page.run()
    assert not problems(page)
    state = job.snapshot()[0]
    assert state.status == "stopped" and state.result.stopped
    assert table_with(page, "arm")["arm"][0] == "Fine-tune (top layers unfrozen)"


@pytest.fixture
def no_clip(monkeypatch):
    """As on a machine without internet or a local copy of CLIP, whatever this one has cached."""
    real_resolve = registry.resolve

    def resolve(spec):
        if spec.key in feats.IMAGE_ENCODERS:
            raise ModelUnavailable(f"{spec.title} is not available on this machine.")
        return real_resolve(spec)

    monkeypatch.setattr(registry.sources, "resolve", resolve)


def test_without_clip_the_image_arms_are_off_with_one_note(page, no_clip):
    page.radio(key="ft_source").set_value("Example: handwritten digits (images)").run()
    assert not problems(page)
    for arm in ("zero_shot", "transfer", "fine_tune"):
        box = page.checkbox(key=f"ft_use_{arm}_off")
        assert box.value is False and box.disabled
    assert page.checkbox(key="ft_use_scratch").value is True
    notes = [i.value for i in page.info if "CLIP" in i.value]
    assert len(notes) == 1 and notes[0].startswith("Use as is, Transfer learning and Fine-tune are turned off")
    assert not [w for w in page.warning if "CLIP" in w.value]
    page.radio(key="ft_source").set_value("Example: product-review sentiment (text)").run()
    assert page.checkbox(key="ft_use_zero_shot").value is True  # ticked again where an encoder is available


# --- uploads: notes with errors, mended rows, results of earlier data --------------------------------
def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def _hostile_zip() -> bytes:
    """One class folder, a '../' entry and a member that unpacks to 8 MB of zeros (over 100x compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(5):
            archive.writestr(f"b/{i}.png", _png((40 * i, 90, 200)))
        archive.writestr("../escape.png", _png((0, 0, 0)))
        archive.writestr("a/bomb.png", bytes(8 * 2**20))
    return buf.getvalue()


def _upload(at, name: str, content: bytes, mime: str):
    at.radio(key="ft_source").set_value("Upload my data").run()
    return at.file_uploader(key="ft_upload").set_value((name, content, mime)).run()


def test_zip_error_comes_with_every_note_and_speaks_of_folders(page):
    _upload(page, "hostile.zip", _hostile_zip(), "application/zip")
    assert not page.exception
    warnings = [w.value for w in page.warning]
    assert len(warnings) == 1 and warnings[0].startswith("Found only one class folder ('b')")
    assert "column" not in warnings[0]
    notes = " ".join(i.value for i in page.info)
    assert "Refused 1 entry for safety" in notes and "../escape.png" in notes
    assert "Refused 1 file that would unpack to too much data" in notes and "a/bomb.png (8.0 MB from" in notes
    assert [h.value for h in page.subheader] == ["1 · Data", "2 · Export a trained head, or use one"]


def test_table_error_comes_with_its_notes(page):
    rows = "".join(f"text {i},b\n" for i in range(6)) + "".join(f"no label {i},\n" for i in range(5))
    _upload(page, "one.csv", ("text,label\n" + rows).encode(), "text/csv")
    assert not page.exception
    assert any(w.value.startswith("Found only one class ('b')") for w in page.warning)
    assert "Dropped 5 rows with an empty text or label." in [i.value for i in page.info]


def test_a_share_that_cannot_split_hides_the_arms_until_one_can(page):
    """The split is a section of its own (a fragment): when it starts or stops working, the whole page follows."""
    rows = "".join(f"text {i},{label}\n" for label in "abc" for i in range(4))  # 12 examples, 3 classes
    _upload(page, "small.csv", ("text,label\n" + rows).encode(), "text/csv")
    page.slider(key="ft_test_size").set_value(0.1).run()  # 2 held-out examples cannot cover 3 classes
    assert not page.exception
    assert any(w.value.startswith("The data is too small to hold out 10%") for w in page.warning)
    assert "ft_run" not in [b.key for b in page.button]
    page.slider(key="ft_test_size").set_value(0.3).run()
    assert not problems(page) and not [w for w in page.warning if "too small" in w.value]
    assert "ft_run" in [b.key for b in page.button]
    assert any("on the same 4 held-out examples" in c.value for c in page.caption)


def test_unquoted_commas_are_joined_back_and_said(page):
    texts = [("works well", "pos"), ("broke, sadly, after a day", "neg"), ("love it", "pos"),
             ("meh, not worth it", "neg"), ("great value", "pos"), ("awful, awful, awful", "neg")] * 2
    _upload(page, "hand.csv", ("words,tag\n" + "".join(f"{t},{y}\n" for t, y in texts)).encode(), "text/csv")
    assert not problems(page)
    assert (page.selectbox[0].value, page.selectbox[1].value) == ("words", "tag")
    assert "12 texts · 2 classes" in " ".join(c.value for c in page.caption)
    assert any(i.value.startswith("Joined the extra cells of 6 rows") for i in page.info)


def test_results_of_earlier_data_are_cleared_when_the_data_changes(page):
    _only(page, "transfer")
    page.checkbox(key="ft_label_curve").set_value(False)
    page.run()
    run_and_wait(page)
    assert page.success and "4 · Results on the held-out split" in [h.value for h in page.subheader]
    _upload(page, "bad.csv", b"text,label\nonly,one\n", "text/csv")  # an error for the new file
    assert page.warning
    assert not page.success and not page.get("download_button")
    assert not [h.value for h in page.subheader if "Results" in h.value or "Progress" in h.value]
    assert "ft_job" not in page.session_state


def test_sections_are_numbered_without_gaps(page):
    assert [h.value for h in page.subheader] == ["1 · Data", "2 · Arms", "3 · Export a trained head, or use one"]
    _only(page, "scratch")
    page.checkbox(key="ft_label_curve").set_value(False)
    page.run()
    run_and_wait(page)
    assert [h.value.split(" · ")[0] for h in page.subheader] == ["1", "2", "3", "4", "5"]


# --- the page's charts (pure functions, checked through their Vega-Lite specs) ---------------------------
def _data(spec: dict) -> list[dict]:
    return next(iter(spec["datasets"].values()))


def test_confusion_chart_has_one_cell_per_pair_in_label_order():
    import numpy as np

    from core.charts import finetune as charts

    spec = charts.confusion_chart(np.array([[5, 1], [2, 7]]), ["neg", "pos"], "arm").to_dict()
    cells = {(row["actual"], row["predicted"]): row["examples"] for row in _data(spec)}
    assert cells == {("neg", "neg"): 5, ("neg", "pos"): 1, ("pos", "neg"): 2, ("pos", "pos"): 7}
    assert spec["layer"][0]["encoding"]["x"]["sort"] == ["neg", "pos"]
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "text"]


def test_curve_chart_draws_loss_and_accuracy_on_two_axes():
    from core.charts import finetune as charts

    curve = [{"step": 0, "epoch": 0.0, "loss": None, "accuracy": 0.5},
             {"step": 1, "epoch": 0.5, "loss": 0.7, "accuracy": None},
             {"step": 2, "epoch": 1.0, "loss": 0.6, "accuracy": 0.8}]
    spec = charts.curve_chart(curve).to_dict()
    assert spec["resolve"]["scale"]["y"] == "independent"
    assert [layer["encoding"]["y"]["field"] for layer in spec["layer"]] == ["loss", "accuracy"]
    assert len(_data(spec)) == 3
    assert charts.curve_chart([]).to_dict()["layer"]  # an empty curve still draws (nothing)


def test_label_efficiency_and_class_balance_charts():
    from core.charts import finetune as charts

    rows = [{"examples_per_class": k, "train_examples": 2 * k, "approach": a, "accuracy": acc}
            for k, a, acc in [(1, "transfer learning", 0.6), (1, "use as is", 0.7), (2, "transfer learning", 0.8),
                              (2, "use as is", 0.7)]]
    spec = charts.label_efficiency_chart(rows).to_dict()
    assert spec["encoding"]["x"]["scale"] == {"type": "log", "base": 2}
    assert spec["encoding"]["color"]["scale"]["domain"][:2] == ["use as is", "transfer learning"]
    assert len(_data(spec)) == 4
    balance = charts.class_balance_chart({"cats": 3, "dogs": 5}).to_dict()
    assert [(r["class"], r["examples"]) for r in _data(balance)] == [("cats", 3), ("dogs", 5)]
