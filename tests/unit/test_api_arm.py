"""The fifth arm, "call an API": scored on the held-out split like the others, priced in dollars."""
import threading

import pytest

from core import providers
from core.errors import InputError
from core.finetune.arms import ApiSettings, run_api
from core.finetune.data import LabelledData
from tests.support.openai_servers import KEY, RecordedServer, needs_llama, recorded_stream

DATA = LabelledData("text", ["good", "bad", "great", "awful"], ["positive", "negative", "positive", "negative"])


def _settings(url: str, **prices) -> ApiSettings:
    point = providers.endpoint("openai-compatible", model="m", base_url=url, session_key=KEY,
                               prices=providers.Prices(**prices))
    return ApiSettings(point)


def test_recorded_answers_are_scored_on_the_held_out_items_and_priced():
    answers = [recorded_stream(["Positive"], prompt_tokens=20), recorded_stream(["nonsense"], prompt_tokens=20),
               recorded_stream(["negative"], prompt_tokens=20)]
    seen = []
    with RecordedServer(answers) as server:
        result = run_api(DATA, [], [0, 1, 3], _settings(server.url, input_per_m=1.0, output_per_m=2.0),
                         on_progress=seen.append)
    # item 0 right, item 1 unanswerable (wrong), item 3 right
    assert result.correct == [True, False, True]
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.params["cost_usd"] == pytest.approx((60 * 1.0 + 3 * 2.0) / 1e6)
    assert result.params["cost_per_1000_usd"] == pytest.approx(result.params["cost_usd"] / 3 * 1000)
    assert [p.done for p in seen] == [1, 2, 3] and seen[-1].fraction == 1.0
    assert any("named no label" in n for n in result.notes)
    assert KEY not in repr(result)


def test_stop_ends_the_calls_and_the_rest_count_as_wrong():
    stop = threading.Event()
    with RecordedServer([recorded_stream(["positive"])]) as server:
        result = run_api(DATA, [], [0, 2], _settings(server.url), on_progress=lambda p: stop.set(), should_stop=stop.is_set)
    assert result.correct == [True, False] and len(server.requests) == 1
    assert any("Stopped after 1 of 2" in n for n in result.notes)


def test_image_data_is_refused_in_one_line():
    with pytest.raises(InputError, match="vision"):
        run_api(LabelledData("image", [], []), [], [], _settings("http://127.0.0.1:9/v1"))


@needs_llama
@pytest.mark.real_model
def test_real_llama_server_as_the_fifth_arm(llama):
    result = run_api(DATA, [], [0, 1], _settings(llama))
    assert result.test_examples == 2 and 0.0 <= result.accuracy <= 1.0 and result.source == "hosted"
