"""Hosted image generation, transcription and vision chat: against RECORDED responses of the documented schemas
(OpenAI images and audio, Hugging Face text-to-image, Replicate predictions, OpenAI vision chat), and against a
real faster-whisper-server on 127.0.0.1 where it is installed."""
import base64
import io
import json

import pytest
from PIL import Image

from core import audio, providers, speech
from core.catalog import get_spec
from core.errors import InputError
from tests.support.openai_servers import (
    RecordedServer, packaged_whisper, png, recorded_error, recorded_hf_error, recorded_hf_image, recorded_json,
    recorded_openai_image, recorded_prediction, recorded_replicate_error, recorded_stream, recorded_transcription,
    whisper_server, whisper_server_installed,
)

KEY = "sk-PLANTED-media-0123456789abcdef"
PRICES = providers.Prices(per_image=0.25, per_audio_minute=0.5, input_per_m=1e6, output_per_m=2e6)


def _point(provider: str, url: str, key: str | None = KEY, model: str = "", task: str = "images", **kw):
    return providers.endpoint(provider, model=model, base_url=url, session_key=key or "", task=task, env={},
                              prices=kw.pop("prices", PRICES), **kw)


def _body(request: dict) -> dict:
    return json.loads(request["body"])


def _no_key_anywhere(*texts: str) -> None:
    for text in texts:
        assert KEY not in text


# --- configuration --------------------------------------------------------------------------------
def test_image_providers_and_their_default_urls_and_models():
    kinds = {p.key: providers.image_kind(providers.endpoint(p.key, task="images", session_key="k", base_url="http://h/v1"))
             for p in providers.PROVIDERS.values() if set(p.kinds) & set(providers.IMAGE_KINDS)}
    assert kinds == {"openai-compatible": providers.IMAGES, "openai": providers.IMAGES, "hf": providers.HF_IMAGES,
                     "replicate": providers.REPLICATE_IMAGES}
    hf = providers.endpoint("hf", task="images", env={})
    assert hf.base_url == "https://router.huggingface.co/hf-inference" and hf.model == "black-forest-labs/FLUX.1-schnell"
    assert providers.endpoint("hf", task="chat", env={}).base_url == "https://router.huggingface.co/v1"
    replicate = providers.endpoint("replicate", task="images", env={"REPLICATE_API_TOKEN": "r8_x"})
    assert replicate.key_source == "environment" and replicate.base_url == "https://api.replicate.com/v1"
    assert providers.configured(env={"REPLICATE_API_TOKEN": "r8_x"}) == {"replicate": "environment"}


def test_image_measurements_are_hosted_engine_and_never_hold_the_key():
    with RecordedServer([recorded_openai_image(png(16, 12))]) as server:
        result = providers.generate_image(_point("openai-compatible", server.url, model="m"), "a fox", 256, 256)
    m = result.measurement
    assert (m.engine, m.source, m.load_s, m.model) == ("hosted", "hosted", None, "openai-compatible/m")
    _no_key_anywhere(repr(result.measurement), repr(result.notes))


# --- OpenAI-compatible images, recorded --------------------------------------------------------------
def test_recorded_openai_images_b64_json_is_decoded_measured_and_priced():
    with RecordedServer([recorded_openai_image(png(16, 12))]) as server:
        result = providers.generate_image(_point("openai-compatible", server.url, model="sd"), " a red fox ", 256, 384)
    sent = server.requests[0]
    assert sent["path"] == "/v1/images/generations" and sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert _body(sent) == {"model": "sd", "prompt": "a red fox", "n": 1, "size": "256x384", "response_format": "b64_json"}
    assert result.image.size == (16, 12) and result.image.mode == "RGB" and result.mime == "image/png"
    assert result.data == png(16, 12) and result.parameters["prompt"] == "a red fox"
    extra = result.measurement.extra
    assert extra["cost_usd"] == pytest.approx(0.25) and extra["images_per_s"] > 0


def test_recorded_openai_gpt_image_is_asked_for_1024_with_a_note():
    with RecordedServer([recorded_openai_image(png())]) as server:
        result = providers.generate_image(_point("openai", server.url, model="gpt-image-1"), "a fox", 512, 512)
    body = _body(server.requests[0])
    assert body["size"] == "1024x1024" and "response_format" not in body
    assert any("1024x1024" in note and "512x512" in note for note in result.notes)


def test_recorded_openai_image_url_is_fetched_without_the_key():
    with RecordedServer([recorded_hf_image(png(9, 9))]) as files:
        answer = recorded_json({"created": 1, "data": [{"url": f"{files.root}/img/out.png"}]})
        with RecordedServer([answer]) as api:
            result = providers.generate_image(_point("openai-compatible", api.url, model="m"), "a fox")
    assert result.image.size == (9, 9)
    assert files.requests[0]["path"] == "/img/out.png" and "Authorization" not in files.requests[0]["headers"]


# --- Hugging Face text-to-image, recorded ------------------------------------------------------------
def test_recorded_hf_text_to_image_posts_inputs_and_parameters_and_reads_bytes():
    jpeg = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 90, 200)).save(jpeg, format="JPEG")
    with RecordedServer([recorded_hf_image(jpeg.getvalue(), "image/jpeg")]) as server:
        point = _point("hf", f"{server.root}/hf-inference", model="black-forest-labs/FLUX.1-schnell")
        result = providers.generate_image(point, "a fox", 512, 256, seed=7, steps=4, negative_prompt="blur")
    sent = server.requests[0]
    assert sent["path"] == "/hf-inference/models/black-forest-labs/FLUX.1-schnell"
    assert _body(sent) == {"inputs": "a fox", "parameters": {"width": 512, "height": 256, "seed": 7,
                                                             "num_inference_steps": 4, "negative_prompt": "blur"}}
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert result.image.size == (20, 10) and result.mime == "image/jpeg"


def test_hf_and_replicate_model_names_must_be_owner_slash_name():
    for provider in ("hf", "replicate"):
        with RecordedServer([recorded_hf_image(png())]) as server:
            with pytest.raises(InputError, match="owner/name"):
                providers.generate_image(_point(provider, server.url, model="../../admin"), "a fox")
        assert not server.requests


# --- Replicate predictions, recorded ---------------------------------------------------------------
def test_recorded_replicate_prefer_wait_then_the_output_file_without_the_key():
    with RecordedServer([recorded_hf_image(png(32, 32))]) as files:
        done = recorded_prediction(output=[f"{files.root}/pbxt/out-0.png"])
        with RecordedServer([done]) as api:
            point = _point("replicate", api.url, model="black-forest-labs/flux-schnell", timeout_s=45)
            result = providers.generate_image(point, "a fox", seed=3)
    sent = api.requests[0]
    assert sent["path"] == "/v1/models/black-forest-labs/flux-schnell/predictions"
    assert sent["headers"]["Prefer"] == "wait=45" and sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert _body(sent)["input"] == {"prompt": "a fox", "seed": 3, "num_outputs": 1, "output_format": "png"}
    assert "Authorization" not in files.requests[0]["headers"]
    assert result.image.size == (32, 32)
    assert result.measurement.extra["server_predict_s"] == pytest.approx(0.61)
    assert any("chooses its own size" in note for note in result.notes)


def test_recorded_replicate_polls_a_prediction_that_is_still_processing():
    waits = []
    with RecordedServer([recorded_hf_image(png())]) as files:
        with RecordedServer([]) as api:
            poll = f"{api.url}/predictions/rec0prediction"
            api.responses[:] = [recorded_prediction("processing", get_url=poll),
                                recorded_prediction("succeeded", output=f"{files.root}/out.png")]
            result = providers.generate_image(_point("replicate", api.url, model="o/n"), "a fox", sleep=waits.append)
    assert waits == [providers.REPLICATE_POLL_S] and result.image.size == (8, 8)
    assert api.requests[1]["path"] == "/v1/predictions/rec0prediction"
    assert api.requests[1]["headers"]["Authorization"] == f"Bearer {KEY}"  # the API's own host


def test_recorded_replicate_still_processing_at_the_timeout_says_so():
    with RecordedServer([recorded_prediction("processing", get_url="http://127.0.0.1:9/p")]) as api:
        with pytest.raises(providers.HostedError) as err:
            providers.generate_image(_point("replicate", api.url, model="o/n", timeout_s=1), "a fox", sleep=lambda s: None)
    assert err.value.kind == "timeout" and "'processing'" in str(err.value)


def test_recorded_replicate_failed_prediction_is_one_line_without_the_key():
    with RecordedServer([recorded_prediction("failed", error=f"NSFW content detected ({KEY})")]) as api:
        with pytest.raises(providers.HostedError) as err:
            providers.generate_image(_point("replicate", api.url, model="o/n"), "a fox")
    assert err.value.kind == "failed" and "NSFW content detected" in str(err.value)
    _no_key_anywhere(str(err.value))
    assert "\n" not in str(err.value)


def test_recorded_replicate_429_waits_and_retries_once():
    waits = []
    with RecordedServer([recorded_hf_image(png())]) as files:
        responses = [recorded_replicate_error(429, "Request was throttled. Expected available in 5 seconds.",
                                              {"Retry-After": "5"}),
                     recorded_prediction(output=[f"{files.root}/out.png"])]
        with RecordedServer(responses) as api:
            result = providers.generate_image(_point("replicate", api.url, model="o/n"), "a fox", sleep=waits.append)
    assert waits == [5.0] and len(api.requests) == 2 and result.image.size == (8, 8)


# --- failures of every image API, recorded -------------------------------------------------------------
def _image_call(provider: str, response: dict, **kw):
    """Run one image call whose API answers ``response``; return the HostedError (or the result)."""
    with RecordedServer([response]) as api:
        url = f"{api.root}/hf-inference" if provider == "hf" else api.url
        point = _point(provider, url, model="o/n", **kw)
        try:
            return providers.generate_image(point, "a fox", sleep=lambda s: None), api
        except providers.HostedError as err:
            return err, api


ERRORS = {"openai-compatible": recorded_error, "hf": recorded_hf_error, "replicate": recorded_replicate_error}


@pytest.mark.parametrize("provider", ["openai-compatible", "hf", "replicate"])
@pytest.mark.parametrize("status,kind", [(401, "auth"), (403, "auth"), (404, "not-found"), (503, "server")])
def test_recorded_image_http_errors_are_one_line_without_the_key(provider, status, kind):
    err, _ = _image_call(provider, ERRORS[provider](status, f"bad token {KEY}"))
    assert isinstance(err, providers.HostedError) and err.kind == kind
    _no_key_anywhere(str(err))
    assert "\n" not in str(err)


@pytest.mark.parametrize("provider", ["openai-compatible", "hf", "replicate"])
def test_recorded_image_429_twice_reports_the_wait(provider):
    err, api = _image_call(provider, {**ERRORS[provider](429, "slow down"), "headers": {"Retry-After": "2"}})
    assert err.kind == "rate-limited" and "wait 2 s" in str(err) and len(api.requests) == 2


@pytest.mark.parametrize("provider,body", [
    ("openai-compatible", b"{not json"), ("openai-compatible", b'{"data": []}'),
    ("openai-compatible", json.dumps({"data": [{"b64_json": "@@not base64@@"}]}).encode()),
    ("replicate", b"<html>gateway</html>"), ("replicate", json.dumps({"status": "succeeded", "output": None}).encode()),
])
def test_recorded_malformed_image_answers_are_one_line(provider, body):
    err, _ = _image_call(provider, {"body": body})
    assert isinstance(err, providers.HostedError) and err.kind == "malformed" and "\n" not in str(err)


@pytest.mark.parametrize("provider", ["openai-compatible", "hf"])
def test_recorded_bytes_that_are_not_an_image_are_refused(provider):
    junk = b"<!DOCTYPE html><html>Service Unavailable</html>"
    response = recorded_openai_image(junk) if provider == "openai-compatible" else recorded_hf_image(junk, "image/png")
    err, _ = _image_call(provider, response)
    assert err.kind == "malformed" and "not a readable image" in str(err) and "\n" not in str(err)


def test_recorded_image_cut_off_after_its_header_is_malformed_not_a_traceback():
    cut = png(64, 64)[:60]  # a valid header, then nothing: core.images.decode finds it truncated
    err, _ = _image_call("hf", recorded_hf_image(cut))
    assert err.kind == "malformed" and "not a readable image" in str(err) and "\n" not in str(err)


def test_recorded_image_larger_than_the_pixel_limit_is_oversized(monkeypatch):
    monkeypatch.setattr(providers.images, "MAX_IMAGE_PIXELS", 100)
    err, _ = _image_call("hf", recorded_hf_image(png(20, 20)))
    assert err.kind == "oversized" and "20x20" in str(err)


@pytest.mark.parametrize("provider", ["openai-compatible", "hf"])
def test_recorded_image_body_larger_than_the_byte_limit_is_oversized(monkeypatch, provider):
    monkeypatch.setattr(providers.http, "MAX_RESPONSE_BYTES", 1000)
    big = png(400, 400, (1, 2, 3)) + b"\0" * 4000
    response = recorded_openai_image(big) if provider == "openai-compatible" else recorded_hf_image(big)
    err, _ = _image_call(provider, response)
    assert err.kind == "oversized" and "stopped reading" in str(err)


@pytest.mark.parametrize("provider", ["hf", "replicate"])
def test_image_call_without_a_key_is_refused_before_sending(provider):
    err, api = _image_call(provider, recorded_hf_image(png()), key=None)
    assert err.kind == "no-key" and not api.requests


def test_image_call_needs_a_prompt():
    with pytest.raises(InputError, match="no prompt"):
        providers.generate_image(_point("openai-compatible", "http://127.0.0.1:9/v1", model="m"), "  \x00 ")


# --- transcription ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    data, reference = speech.sample_clip()
    return audio.decode(data, "sample.flac"), reference


def _multipart_fields(request: dict) -> dict:
    """The form fields of a multipart request (the file's first bytes under its field name)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"Content-Type: {request['headers']['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request["body"])
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()}


def test_recorded_transcription_sends_wav_multipart_and_returns_a_transcript(sample):
    clip, reference = sample
    segments = [(0.0, 4.36, " Before you train a new model, try one that already exists."),
                (4.36, 9.84, " A pretrained model can often answer your question today on your own computer.")]
    with RecordedServer([recorded_transcription("".join(t for *_, t in segments), segments)]) as server:
        point = _point("openai-compatible", server.url, model="whisper-1", task="transcription")
        t = providers.transcribe(point, clip)
    sent = server.requests[0]
    fields = _multipart_fields(sent)
    assert sent["path"] == "/v1/audio/transcriptions" and sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert fields["model"] == b"whisper-1" and fields["response_format"] == b"verbose_json"
    assert fields["file"][:4] == b"RIFF" and fields["file"][8:12] == b"WAVE" and "language" not in fields
    assert isinstance(t, speech.Transcript) and t.backend == "hosted" and t.language == "en"
    assert [s.text for s in t.segments] == [s for *_, s in segments]
    assert speech.word_error_rate(reference, t.text) == 0.0 and t.coverage > 0.5
    m = t.measurement
    assert m.engine == "hosted" and m.extra["audio_s"] == pytest.approx(clip.duration_s)
    assert m.extra["cost_usd"] == pytest.approx(0.5 * clip.duration_s / 60)
    assert m.extra["audio_s_per_s"] == pytest.approx(1 / m.extra["real_time_factor"])


def test_recorded_transcription_plain_json_counts_as_one_segment_and_language_is_sent(sample):
    clip, _ = sample
    with RecordedServer([recorded_json({"text": "Hello there."})]) as server:
        point = _point("openai", server.url, model="gpt-4o-transcribe", task="transcription")
        t = providers.transcribe(point, clip, speech.TranscribeOptions(language="en"))
    fields = _multipart_fields(server.requests[0])
    assert fields["response_format"] == b"json" and fields["language"] == b"en"
    assert t.text == "Hello there." and len(t.segments) == 1 and t.language == "en"
    assert any("without segment times" in note for note in t.notes)


def test_recorded_translation_goes_to_the_translations_route(sample):
    clip, _ = sample
    with RecordedServer([recorded_transcription("Hi.", [(0.0, 1.0, "Hi.")], language="german")]) as server:
        t = providers.transcribe(_point("openai-compatible", server.url, model="whisper-1", task="transcription"), clip,
                                 speech.TranscribeOptions(translate=True))
    assert server.requests[0]["path"] == "/v1/audio/translations" and t.language == "de"


@pytest.mark.parametrize("response,kind", [
    (recorded_error(401, f"Incorrect API key provided: {KEY}"), "auth"),
    (recorded_error(413, "Maximum content size limit (26214400) exceeded"), "oversized"),
    (recorded_error(500, "The server had an error"), "server"),
    ({"body": b"Internal Server Error", "headers": {"Content-Type": "text/plain"}}, "malformed"),
    (recorded_json({"segments": []}), "malformed"),
    (recorded_json({"text": "x", "segments": [{"start": "soon"}]}), "malformed"),
])
def test_recorded_transcription_failures_are_one_line_without_the_key(sample, response, kind):
    with RecordedServer([response]) as server:
        with pytest.raises(providers.HostedError) as err:
            providers.transcribe(_point("openai-compatible", server.url, model="whisper-1", task="transcription"),
                                 sample[0])
    assert err.value.kind == kind and "\n" not in str(err.value)
    _no_key_anywhere(str(err.value))


def test_transcription_is_refused_by_a_provider_without_it(sample):
    with pytest.raises(InputError, match="does not transcribe"):
        providers.transcribe(_point("replicate", "http://127.0.0.1:9/v1", model="o/n"), sample[0])


needs_whisper_server = pytest.mark.skipif(
    not whisper_server_installed() or packaged_whisper() is None,
    reason="faster-whisper-server or the packaged Whisper tiny.en is not installed (make test installs both)",
)


@needs_whisper_server
@pytest.mark.real_model
def test_real_whisper_server_transcribes_the_sample(sample, tmp_path):
    clip, reference = sample
    log = tmp_path / "server.log"
    with whisper_server(log_path=log) as url:
        point = _point("openai-compatible", url, model="whisper-1", task="transcription")
        t = providers.transcribe(point, clip)
    assert speech.word_error_rate(reference, t.text) <= 0.2
    assert t.language == "en" and len(t.segments) >= 1 and t.segments[-1].end <= clip.duration_s + 1
    assert t.measurement.extra["audio_s_per_s"] > 0
    _no_key_anywhere(log.read_text())


# --- vision chat: captions and zero-shot labels ----------------------------------------------------------
def _content(request: dict) -> list:
    return _body(request)["messages"][-1]["content"]


def test_recorded_vision_caption_sends_the_image_as_a_data_url():
    picture = Image.new("RGB", (2000, 1000), (250, 0, 0))
    with RecordedServer([recorded_stream(["A red", " square."], prompt_tokens=100)]) as server:
        result = providers.caption(_point("openai-compatible", server.url, model="vlm", task="vision"), [picture])
    text, image = _content(server.requests[0])
    assert text == {"type": "text", "text": providers.CAPTION_PROMPT}
    url = image["image_url"]["url"]
    assert image["type"] == "image_url" and url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (providers.MAX_SENT_SIDE, providers.MAX_SENT_SIDE // 2)
    assert result.captions == ["A red square."]
    assert result.measurement.extra["cost_usd"] == pytest.approx(100 * 1 + 2 * 2)
    assert result.measurement.engine == "hosted" and result.measurement.extra["images_per_s"] > 0


def test_recorded_vision_zero_shot_matches_each_answer_to_a_label():
    pictures = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    answers = [recorded_stream(["cat"]), recorded_stream(["It is a dog."]), recorded_stream(["no idea"])]
    with RecordedServer(answers) as server:
        result = providers.label_images(_point("openai-compatible", server.url, model="vlm", task="vision"), pictures,
                                        ["cat", "dog"])
    assert result.top == [("cat", None), ("dog", None), (None, None)] and any("named no label" in n for n in result.notes)
    assert "cat, dog" in _content(server.requests[0])[0]["text"]
    assert _body(server.requests[0])["messages"][0]["role"] == "system"


def test_vision_calls_need_images_and_two_labels():
    point = _point("openai-compatible", "http://127.0.0.1:9/v1", model="vlm")
    with pytest.raises(InputError):
        providers.caption(point, [])
    with pytest.raises(InputError):
        providers.label_images(point, [], ["a", "b"])
    with pytest.raises(InputError, match="two label"):
        providers.label_images(point, [Image.new("RGB", (4, 4))], ["only"])


def test_recorded_vision_401_is_one_line_without_the_key():
    with RecordedServer([recorded_error(401, f"bad key {KEY}")]) as server:
        with pytest.raises(providers.HostedError) as err:
            providers.caption(_point("openai-compatible", server.url, model="vlm"), [Image.new("RGB", (4, 4))])
    assert err.value.kind == "auth"
    _no_key_anywhere(str(err.value))


# --- pages (AppTest): hosted beside local on the same input -------------------------------------------------
PAGE_KEY = "sk-PLANTED-media-page-0042"


@pytest.fixture
def store(tmp_path, monkeypatch):
    from core import runs

    monkeypatch.setenv(runs.RUNS_DB_ENV, str(tmp_path / "runs.sqlite"))
    return tmp_path / "runs.sqlite"


def _page(script: str):
    from tests.support.apptest import app_at

    return app_at(script, 120).run()


def _drawn(at) -> str:
    return str([e.proto for e in at.main]) + str([e.proto for e in at.sidebar])


def _endpoint(at, prefix: str, url: str, provider: str = "openai-compatible", model: str = "") -> None:
    at.selectbox(key=f"{prefix}_provider").set_value(provider).run()
    at.text_input(key=f"{prefix}_{provider}_base_url").set_value(url)
    if model:
        at.text_input(key=f"{prefix}_{provider}_model").set_value(model)
    at.text_input(key=f"{prefix}_api_key").set_value(PAGE_KEY)
    at.run()


def _stored(at):
    from core import runs

    return runs.fetch_runs(session_id=at.session_state["session_id"])


def test_image_generation_page_runs_hosted_where_no_local_model_loads_recorded(store):
    at = _page("app_pages/image_generation.py")
    at.segmented_control(key="imagegen_where").set_value("Hosted API").run()
    assert at.button(key="imagegen_run").disabled  # no base URL yet
    assert any("needs a base URL" in w.value for w in at.warning)
    with RecordedServer([recorded_openai_image(png(24, 24))]) as server:
        _endpoint(at, "imagegen_hosted", server.url, model="sd-server")
        at.number_input(key="imagegen_hosted_p_img").set_value(0.5).run()
        at.text_area(key="imagegen_prompt").input("a red fox in the snow").run()
        at.button(key="imagegen_run").click().run()
    assert not at.exception and not at.error
    assert not any("cannot run here" in w.value for w in at.warning)  # hosted only: no local model is asked for
    result = at.session_state["imagegen_hosted_result"]
    assert result.image.size == (24, 24) and "imagegen_result" not in at.session_state
    labels = [m.label for m in at.metric]
    assert {"Latency", "Images/s", "Cost ($)"} <= set(labels) and "Peak memory" not in labels
    stored = _stored(at)
    assert list(stored["approach"]) == ["call an API"] and stored["api_cost_usd"].iloc[0] == pytest.approx(0.5)
    assert PAGE_KEY.encode() not in store.read_bytes() and PAGE_KEY not in _drawn(at)


def test_image_generation_page_both_says_the_local_model_cannot_load_and_still_calls_recorded(store):
    at = _page("app_pages/image_generation.py")
    at.segmented_control(key="imagegen_where").set_value("Both, side by side").run()
    with RecordedServer([recorded_hf_error(401, f"Invalid credentials in Authorization header {PAGE_KEY}")]) as server:
        _endpoint(at, "imagegen_hosted", f"{server.root}/hf-inference", provider="hf")
        at.text_area(key="imagegen_prompt").input("a harbour at dusk").run()
        at.button(key="imagegen_run").click().run()
    assert not at.exception
    assert any("cannot run here" in w.value for w in at.warning)
    assert any("Not run" in c.value for c in at.caption)
    (error,) = [e.value for e in at.error]
    assert "refused the key (HTTP 401)" in error and PAGE_KEY not in _drawn(at)
    assert server.requests[0]["path"] == "/hf-inference/models/black-forest-labs/FLUX.1-schnell"


@pytest.fixture
def tiny_pipeline(fresh_cache, tmp_path):
    from core import registry
    from tests.support import tiny_generation as tiny

    registry.install("sdxs-512", tiny.text_to_image(tmp_path, default_steps=2, default_guidance=0.0))


def test_image_generation_page_both_side_by_side_with_a_comparison_recorded(tiny_pipeline, store):
    at = _page("app_pages/image_generation.py")
    at.segmented_control(key="imagegen_where").set_value("Both, side by side").run()
    with RecordedServer([recorded_openai_image(png(16, 16))]) as server:
        _endpoint(at, "imagegen_hosted", server.url, model="sd-server")
        at.text_area(key="imagegen_prompt").input("a small robot")
        at.slider(key="imagegen_steps").set_value(2)
        at.number_input(key="imagegen_width").set_value(256)
        at.number_input(key="imagegen_height").set_value(256)
        at.run()
        at.button(key="imagegen_run").click().run()
    assert not at.exception and not at.error
    assert at.session_state["imagegen_result"].image.size == (256, 256)
    assert at.session_state["imagegen_hosted_result"].image.size == (16, 16)
    assert _body(server.requests[0])["size"] == "256x256"
    assert any("Same input, both ways" in i.value for i in at.info)
    assert sorted(_stored(at)["approach"]) == ["call an API", "use as is"]


def test_speech_page_transcribes_on_a_hosted_api_only_recorded(store):
    at = _page("app_pages/speech.py")
    at.segmented_control(key="speech_where").set_value("Hosted API").run()
    assert at.button(key="speech_run").disabled  # no base URL yet
    with RecordedServer([recorded_transcription("Before you train.", [(0.0, 2.0, "Before you train.")])]) as server:
        _endpoint(at, "speech_hosted", server.url)
        at.number_input(key="speech_hosted_p_audio").set_value(0.6).run()
        at.button(key="speech_run").click().run()
    assert not at.exception and not at.error
    hosted = at.session_state["speech_hosted_result"]
    assert hosted.text == "Before you train." and "speech_result" not in at.session_state
    assert at.text_area(key="speech_hosted_result_text").value == "Before you train."
    labels = [m.label for m in at.metric]
    assert {"Latency", "Audio s/s", "Cost ($)", "WER vs known text"} <= set(labels)
    stored = _stored(at)
    assert list(stored["approach"]) == ["call an API"]
    assert stored["api_cost_usd"].iloc[0] == pytest.approx(0.6 * hosted.audio_s / 60)
    assert PAGE_KEY.encode() not in store.read_bytes() and PAGE_KEY not in _drawn(at)


@pytest.mark.real_model
def test_speech_page_side_by_side_with_the_packaged_model_and_a_recorded_api(fresh_cache, store):
    at = _page("app_pages/speech.py")
    at.segmented_control(key="speech_where").set_value("Both, side by side").run()
    at.radio(key="speech_backend").set_value("faster-whisper").run()
    at.selectbox(key="speech_model_faster-whisper").select(get_spec("faster-whisper-tiny-en")).run()
    at.select_slider(key="speech_beam").set_value(1).run()
    with RecordedServer([recorded_error(429, "Rate limit reached", {"Retry-After": "60"})]) as server:
        _endpoint(at, "speech_hosted", server.url)
        at.button(key="speech_run").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "HTTP 429" in error and "wait 60 s" in error  # a wait longer than 20 s is not retried
    assert at.session_state["speech_result"].text  # the local transcript stays
    with RecordedServer([recorded_transcription("Before you train.", [(0.0, 2.0, "Before you train.")])]) as server:
        _endpoint(at, "speech_hosted", server.url)
        at.button(key="speech_run").click().run()
    assert not at.exception and not at.error
    assert any("Same input, both ways" in i.value and "audio s/s" in i.value for i in at.info)
    assert sorted(_stored(at)["approach"]) == ["call an API", "use as is", "use as is"]


@pytest.fixture
def tiny_vision_models(fresh_cache):
    from core import registry, vision
    from tests.support import tiny_vision

    registry.install(vision.CLIP_KEY, tiny_vision.clip_model())
    registry.install(vision.CAPTION_KEY, tiny_vision.blip_captioner())


def test_image_text_page_labels_on_a_hosted_vision_model_only_recorded(fresh_cache, store):
    at = _page("app_pages/image_text.py")
    at.segmented_control(key="it_label_where").set_value("Hosted API").run()
    assert at.button(key="it_label_run").disabled
    with RecordedServer([recorded_stream(["cat"], prompt_tokens=300)]) as server:
        _endpoint(at, "it_label_hosted", server.url, model="vlm")
        at.button(key="it_label_run").click().run()
    assert not at.exception and not at.error
    hosted, shown = at.session_state["it_label_hosted_result"], at.session_state["it_label_kept"]
    assert hosted.top == [("cat", None)] and len(shown) == 1 and "it_label_result" not in at.session_state
    assert "data:image/jpeg;base64," in server.requests[0]["body"].decode()
    assert {"Latency", "Images/s", "Cost ($)"} <= {m.label for m in at.metric}
    assert list(_stored(at)["approach"]) == ["call an API"]
    assert PAGE_KEY.encode() not in store.read_bytes() and PAGE_KEY not in _drawn(at)


def test_image_text_page_captions_side_by_side_recorded(tiny_vision_models, store):
    at = _page("app_pages/image_text.py")
    at.segmented_control(key="it_caption_where").set_value("Both, side by side").run()
    with RecordedServer([recorded_stream(["A cat", " on a sofa."], prompt_tokens=300)]) as server:
        _endpoint(at, "it_caption_hosted", server.url, model="vlm")
        at.slider(key="it_max_new_tokens").set_value(5).run()
        at.button(key="it_caption_run").click().run()
    assert not at.exception and not at.error
    hosted = at.session_state["it_caption_hosted_result"]
    assert hosted.captions == ["A cat on a sofa."] and at.session_state["it_caption_result"].captions
    assert any("Same input, both ways" in i.value for i in at.info)
    assert sorted(_stored(at)["approach"]) == ["call an API", "use as is"]


def test_image_text_page_hosted_failure_is_one_line_and_local_labels_stay_recorded(tiny_vision_models):
    at = _page("app_pages/image_text.py")
    at.segmented_control(key="it_label_where").set_value("Both, side by side").run()
    with RecordedServer([recorded_error(404, "The model `vlm` does not exist")]) as server:
        _endpoint(at, "it_label_hosted", server.url, model="vlm")
        at.button(key="it_label_run").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "does not know the model 'vlm'" in error
    assert at.session_state["it_label_result"].top and "it_label_hosted_result" not in at.session_state
