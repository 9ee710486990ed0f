"""Hosted inference: configuration, keys, failures, and calls against real and recorded loopback servers."""
import time

import pytest

from core import providers
from core.errors import InputError
from tests.support.openai_servers import KEY, RecordedServer, needs_llama, recorded_error, recorded_stream


def _point(url: str, key: str | None = KEY, **kw) -> providers.Endpoint:
    return providers.endpoint("openai-compatible", model="m", base_url=url, session_key=key or "", **kw)


# --- configuration --------------------------------------------------------------------------------
def test_session_key_wins_over_secrets_and_environment_and_repr_hides_it():
    point = providers.endpoint("openai", session_key=KEY, secrets={"OPENAI_API_KEY": "from-secrets"},
                               env={"OPENAI_API_KEY": "from-env"})
    assert point.api_key == KEY and point.key_source == "this session"
    assert KEY not in repr(point) and KEY not in point.label
    assert providers.endpoint("openai", secrets={"OPENAI_API_KEY": "s"}, env={"OPENAI_API_KEY": "e"}).key_source == "secrets"
    assert providers.endpoint("openai", env={"OPENAI_API_KEY": "e"}).key_source == "environment"


def test_configured_names_sources_never_keys():
    found = providers.configured(secrets={"HF_TOKEN": "hf_abc"}, env={"OPENAI_API_KEY": "sk-x"})
    assert found == {"openai-compatible": "environment", "openai": "environment", "hf": "secrets"}


def test_base_url_comes_from_env_and_bad_urls_are_refused_in_one_line():
    assert providers.endpoint("openai-compatible", model="m", env={"OPENAI_BASE_URL": "http://h:1/v1/"}).base_url == "http://h:1/v1"
    for bad in ("ftp://h/v1", "localhost:8080", "http://user:pw@h/v1", "http://h/v1?key=abc"):
        with pytest.raises(InputError):
            providers.endpoint("openai-compatible", model="m", base_url=bad, env={})
    with pytest.raises(InputError, match="base URL"):
        providers.endpoint("openai-compatible", model="m", env={})


def test_prices_cost_a_call():
    prices = providers.Prices(input_per_m=1.0, output_per_m=3.0)
    assert prices.chat_usd(1_000_000, 0) == pytest.approx(1.0)
    assert prices.chat_usd(2000, 1000) == pytest.approx(0.002 + 0.003)


def test_label_matching():
    labels = ["positive", "negative"]
    assert providers.match_label(" Positive.", labels) == "positive"
    assert providers.match_label("The label is negative", labels) == "negative"
    assert providers.match_label("both positive and negative", labels) is None
    assert providers.match_label("no idea", labels) is None


# --- failures, against RECORDED responses ----------------------------------------------------------
def test_no_key_is_refused_before_sending():
    with RecordedServer([recorded_stream(["x"])]) as server:
        point = providers.endpoint("openai", base_url=server.url, env={})
        with pytest.raises(providers.HostedError) as err:
            providers.chat(point, "hi")
    assert err.value.kind == "no-key" and not server.requests


@pytest.mark.parametrize("status,kind", [(401, "auth"), (403, "auth"), (404, "not-found"), (500, "server"), (503, "server")])
def test_recorded_http_errors_become_one_line_without_the_key(status, kind):
    with RecordedServer([recorded_error(status, f"echo of your key {KEY}")]) as server:
        with pytest.raises(providers.HostedError) as err:
            providers.chat(_point(server.url), "hi")
    assert err.value.kind == kind
    assert KEY not in str(err.value) and "\n" not in str(err.value)


def test_recorded_429_waits_what_it_asks_and_retries_once():
    waits = []
    responses = [recorded_error(429, "slow down", {"Retry-After": "3"}), recorded_stream(["o", "k"])]
    with RecordedServer(responses) as server:
        stream = providers.ChatStream(_point(server.url), "hi", sleep=waits.append)
        assert "".join(stream) == "ok"
    assert waits == [3.0] and len(server.requests) == 2


def test_recorded_429_twice_is_reported_with_the_wait():
    with RecordedServer([recorded_error(429, "slow down", {"Retry-After": "1"})]) as server:
        with pytest.raises(providers.HostedError) as err:
            providers.chat(_point(server.url), "hi", sleep=lambda s: None)
    assert err.value.kind == "rate-limited" and "wait 1 s" in str(err.value) and len(server.requests) == 2


def test_recorded_stream_cut_in_the_middle_keeps_what_arrived():
    with RecordedServer([recorded_stream(["Once", " upon", " a"], cut=True)]) as server:
        answer = providers.chat(_point(server.url), "hi")
    assert answer.text == "Once upon a"
    assert any("no token usage" in n or "cut" in n for n in answer.notes)


def test_recorded_malformed_body_is_one_line():
    with RecordedServer([{"stream": [b"data: {not json\n\n"]}]) as server:
        with pytest.raises(providers.HostedError) as err:
            providers.chat(_point(server.url), "hi")
    assert err.value.kind in {"malformed", "failed"} and "\n" not in str(err.value)


def test_recorded_oversized_answer_stops_reading_and_keeps_the_start(monkeypatch):
    monkeypatch.setattr(providers.http, "MAX_RESPONSE_BYTES", 10)
    with RecordedServer([recorded_stream(["0123456", "789abcd", "efghijk"])]) as server:
        answer = providers.chat(_point(server.url), "hi")
    assert answer.text.startswith("0123456") and any("more than" in n for n in answer.notes)


def test_recorded_slow_answer_times_out_at_the_setting():
    with RecordedServer([{**recorded_stream(["late"]), "delay_s": 3}]) as server:
        with pytest.raises(providers.HostedError) as err:
            providers.chat(_point(server.url, timeout_s=1), "hi")
    assert err.value.kind == "timeout" and "1 s" in str(err.value)


def test_unreachable_endpoint_is_said_within_two_seconds():
    from tests.support.openai_servers import free_port

    point = _point(f"http://127.0.0.1:{free_port()}/v1")
    start = time.monotonic()
    with pytest.raises(providers.HostedError) as err:
        providers.chat(point, "hi")
    assert err.value.kind == "unreachable" and time.monotonic() - start < 5  # generous: the promise is 2 s


def test_recorded_stream_measures_ttft_tokens_and_cost():
    with RecordedServer([recorded_stream(["a", "b", "c", "d"], prompt_tokens=10)]) as server:
        point = _point(server.url, prices=providers.Prices(input_per_m=1e6, output_per_m=2e6))
        answer = providers.chat(point, "hi")
    m = answer.measurement
    assert (answer.prompt_tokens, answer.new_tokens) == (10, 4)
    assert m.extra["cost_usd"] == pytest.approx(10 * 1 + 4 * 2)
    assert 0 <= m.extra["time_to_first_token_s"] <= m.latency_s
    assert m.source == "hosted" and m.load_s is None and KEY not in repr(m)
    sent = server.requests[0]
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}" and KEY not in sent["path"]


# --- the real server -----------------------------------------------------------------------------------
@needs_llama
@pytest.mark.real_model
def test_real_llama_server_streams_a_measured_answer(llama):
    stream = providers.ChatStream(_point(llama), "Say hello.", max_tokens=16)
    pieces = list(stream)
    result = stream.result
    assert pieces and result.text == "".join(pieces)
    assert 1 <= result.new_tokens <= 16
    # llama.cpp's server sends no usage chunk in a stream: the figures say they are counted pieces
    assert result.prompt_tokens > 0 or any("no token usage" in n for n in result.notes)
    assert result.measurement.extra["time_to_first_token_s"] > 0


@needs_llama
@pytest.mark.real_model
def test_real_llama_server_refuses_a_wrong_key(llama):
    with pytest.raises(providers.HostedError) as err:
        providers.chat(_point(llama, key="wrong-key"), "hi")
    assert err.value.kind == "auth" and "wrong-key" not in str(err.value)


@needs_llama
@pytest.mark.real_model
def test_real_llama_server_classifies_by_label_names(llama):
    found = providers.classify(_point(llama), ["I love it.", "I hate it."], ["positive", "negative"])
    assert len(found.labels) == 2 and set(found.labels) <= {"positive", "negative", None}
    assert found.measurement.extra["cost_per_1000_usd"] == 0.0  # a local server's example price is zero


def test_sidebar_names_configured_providers_never_their_keys(monkeypatch):
    from tests.support.apptest import app_at

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    at = app_at("app_pages/home.py", 60).run()
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Hosted APIs with a key" in captions and "OpenAI (environment)" in captions
    assert KEY not in str([e.proto for e in at.sidebar]) + str([e.proto for e in at.main])


def test_a_401_when_no_key_was_sent_says_so_instead_of_blaming_the_key():
    with RecordedServer([recorded_error(401, "unauthorised"), recorded_error(401, "unauthorised")]) as server:
        keyless = providers.endpoint("openai-compatible", base_url=server.url, model="m", env={})
        assert keyless.api_key is None
        with pytest.raises(providers.HostedError) as none_sent:
            providers.chat(keyless, "hi")
        with pytest.raises(providers.HostedError) as refused:
            providers.chat(_point(server.url), "hi")
    assert "no key was sent: press Enter in the key field" in str(none_sent.value)
    assert "refused the key" not in str(none_sent.value)
    assert "refused the key" in str(refused.value)


def test_a_stream_without_usage_estimates_the_prompt_so_a_priced_endpoint_is_not_undercharged():
    prompt = "Classify this review as positive or negative: the food was cold and the staff were rude."
    with RecordedServer([recorded_stream(["neg", "ative"], usage=False)]) as server:
        point = _point(server.url, prices=providers.Prices(input_per_m=1.0, output_per_m=2.0))
        stream = providers.ChatStream(point, prompt)
        assert "".join(stream) == "negative"
    result = stream.result
    assert result.prompt_tokens == providers.estimate_tokens([{"role": "user", "content": prompt}]) > 20
    assert result.measurement.extra["cost_usd"] == pytest.approx((result.prompt_tokens * 1.0 + 2 * 2.0) / 1e6)
    assert any("estimated" in note and "prompt" in note for note in result.notes)
