"""Speech page: transcribe the sample, an upload or a recording with Whisper, here, on a hosted API, or both side by
side; compare two local backends."""
import streamlit as st

from functools import partial

from core import audio, providers, registry, speech
from core.errors import InputError
from ui.common import friendly_errors, record, show_measurement
from ui.hosted import HOSTED, LOCAL, comparison, hosted_endpoint, where_picker
from ui.queue import model_turn
from ui.run_on import Here, RunOn, There, View, progress_view
from ui.sidebar import model_picker

FORMATS = ["wav", "mp3", "m4a", "ogg", "flac", "webm"]
BACKEND_NOTES = {
    speech.OPENAI_WHISPER: "OpenAI's reference implementation in PyTorch (float32 on CPU).",
    speech.FASTER_WHISPER: "The same Whisper models re-implemented in CTranslate2, weights quantised to int8.",
}

st.title("Speech: transcribe with Whisper")
st.caption(
    "Inference only: a pretrained Whisper model turns speech into text, as it is. Each result shows where the "
    "weights came from, load time, latency, real-time factor (processing time ÷ audio length) and peak memory."
)

# --- input: the sample, an upload or the microphone --------------------------------------------------
source = st.radio("Audio", ["Sample clip", "Upload a file", "Record"], horizontal=True, key="speech_source")
data, name, reference, picked = None, "", None, None
if source == "Sample clip":
    data, reference = speech.sample_clip()
    name = "sample.flac"
    st.audio(data, format="audio/flac")
    st.caption(f"Known transcript: “{reference}” — synthesised with espeak-ng (assets/audio/sample.json).")
elif source == "Upload a file":
    upload = st.file_uploader("Audio file", type=FORMATS, key="speech_upload")
    if upload is not None:
        data, name, picked = upload.getvalue(), upload.name, upload.file_id
        st.audio(data)
else:
    recording = st.audio_input("Record from your microphone", key="speech_recording")
    if recording is not None:
        data, name, picked = recording.getvalue(), "your recording", recording.file_id
# A new clip (or none) clears the transcripts of the one before, so none sits under audio it does not belong to.
clip_now = None if data is None else (source, name, len(data), picked)
if st.session_state.get("speech_clip") != clip_now:
    for stale in ("speech_result", "speech_hosted_result", "speech_comparison"):
        st.session_state.pop(stale, None)
    st.session_state["speech_clip"] = clip_now
st.caption(f"Audio longer than {audio.max_audio_seconds() / 60:g} minutes is refused (setting UBT_MAX_AUDIO_S).")


def decoded_clip() -> audio.Audio:
    """The chosen audio as 16 kHz mono samples (raises InputError with a message)."""
    if data is None:
        raise InputError("There is no audio yet: pick the sample clip, upload a file or record something first.")
    return audio.decode(data, name)


# --- decoding settings, shared by both tabs ---------------------------------------------------------------
c1, c2, c3 = st.columns(3)
language = None
if c1.radio("Language", ["Detect", "Fixed"], horizontal=True, key="speech_language_mode") == "Fixed":
    names = speech.language_names()
    language = c1.selectbox("Spoken language", list(names), format_func=lambda c: f"{names[c].title()} ({c})", key="speech_language")
translate = c2.toggle("Translate into English", key="speech_translate", help="Multilingual models only: the .en models cannot translate.")
beam = c3.select_slider("Beam size", [1, 2, 5], value=5, key="speech_beam", help="1 is greedy decoding: fastest; 5 is both libraries' default.")
options = speech.TranscribeOptions(language=language, translate=translate, beam_size=beam)
params = {"language": language or "detect", "translate": translate, "beam_size": beam}


def unavailable(*chosen) -> str:
    """Why the chosen models cannot run here, in one line ('' when they all can)."""
    return " ".join(answer.reason for answer in map(registry.availability, chosen) if answer.resolution is None)


def english_only_note(spec) -> None:
    if speech.english_only(spec) and (translate or language not in (None, "en")):
        st.info(f"{spec.title} knows English only: it cannot translate or transcribe other languages. Pick a multilingual model.", icon=":material/translate:")


def show_transcript(t: speech.Transcript, reference: str | None, key: str, name: str = "") -> None:
    """Notes, warnings, language, transcript, coverage, segment table and downloads of one transcript;
    ``name`` tells its controls apart from another transcript's on the page."""
    for note in t.notes:
        st.info(note, icon=":material/info:")
    for warning in t.warnings:
        st.warning(warning, icon=":material/warning:")
    cols = st.columns(3)
    probability = "" if t.language_probability is None else f"p = {t.language_probability:.2f}"
    said = "named by the API" if t.backend == "hosted" else "not detected"
    cols[0].metric("Language", t.language, probability or said, delta_color="off", delta_arrow="off")
    cols[1].metric("Segments", len(t.segments))
    if reference is not None:
        cols[2].metric("WER vs known text", f"{speech.word_error_rate(reference, t.text):.1%}", help="Word error rate against the sample's known transcript.")
    st.session_state[f"{key}_text"] = t.text  # a keyed text area keeps its old value unless told
    st.text_area(f"Transcript{name}", height=110, key=f"{key}_text", disabled=not t.text)
    windows = " · ".join(f"{w.label} {w.status}" for w in t.windows)
    st.caption(f"Segments cover {t.coverage:.0%} of the speech (non-silent audio). Windows: {windows}.")
    if t.segments:
        st.dataframe(
            [{"start (s)": round(s.start, 2), "end (s)": round(s.end, 2), "text": s.text.strip()} for s in t.segments],
            hide_index=True, width="stretch",
        )
    downloads = st.container(horizontal=True)
    stem = f"transcript-{t.backend}" if name else "transcript"
    downloads.download_button(f"Download .txt{name}", t.text + "\n", file_name=f"{stem}.txt", mime="text/plain", key=f"{key}_txt")
    downloads.download_button(f"Download .srt{name}", speech.to_srt(t.segments), file_name=f"{stem}.srt", mime="application/x-subrip", key=f"{key}_srt")


def metrics(t: speech.Transcript, reference: str | None) -> dict:
    wer = {} if reference is None else {"word_error_rate": speech.word_error_rate(reference, t.text)}
    return {"segments": len(t.segments), "speech_coverage": t.coverage, **wer}


transcribe_tab, compare_tab = st.tabs(["One model", "Side by side"])


def _show(t: speech.Transcript, view: View) -> None:
    name = "" if not view.narrow and view.side == LOCAL else (" (this server)" if view.side == LOCAL else " (hosted)")
    show_transcript(t, reference, view.key, name)
    show_measurement(t.measurement, view.narrow)


def _audio_rate(m) -> float:
    """Audio seconds transcribed per second of processing."""
    return m.extra.get("audio_s_per_s") or m.extra["audio_s"] / max(m.latency_s, 1e-9)


def _compare(here: speech.Transcript, there: speech.Transcript) -> None:
    comparison(here.measurement, there.measurement, "audio s", _audio_rate(here.measurement), _audio_rate(there.measurement))
    price = point.prices.per_audio_minute if point is not None else 0.0
    st.caption(f"Hosted price: ${price:,.4f} per audio minute (edit it under Prices). The local run costs this "
               "server's time and memory instead.")


# --- one model (here, hosted, or both), local segments streamed as they are decoded ----------------------
with transcribe_tab:
    where = where_picker("speech_where")
    reason = ""
    point = hosted_endpoint(where, "Hosted endpoint (OpenAI-compatible /audio/transcriptions, e.g. OpenAI or "
                            "faster-whisper-server)", providers.TRANSCRIPTION, "transcription", "speech_hosted")
    if where != HOSTED:
        backend = st.radio("Backend", speech.BACKENDS, horizontal=True, key="speech_backend")
        st.caption(BACKEND_NOTES[backend])
        spec = model_picker("Model", task=backend, key=f"speech_model_{backend}")
        english_only_note(spec)
        if reason := unavailable(spec):
            st.caption(f"Cannot transcribe: {reason}")
    run_here, run_hosted = where != HOSTED and not reason, where != LOCAL and point is not None
    clicked = st.button("Transcribe", type="primary", key="speech_run",
                        disabled=not run_hosted if where != LOCAL else not run_here)
    flow = RunOn("speech", where, "speech", "transcription", "Transcription")
    if clicked:
        with friendly_errors("Transcription"):
            clip = decoded_clip()
            here = run_here and Here(partial(registry.load, spec.key), partial(speech.transcribe, clip=clip, options=options),
                                     "transcribe", f"Transcribing with {spec.title} ...",
                                     progress=f"Loading {spec.title} and reading the first 30 s")
            there = run_hosted and There(point, partial(providers.transcribe, clip=clip, options=options),
                                         f"{clip.duration_s:.0f} s of audio")
            flow.run(here or None, there or None, params=params, local_params={"backend": backend if run_here else ""},
                     hosted_params={"backend": "hosted"}, metrics=partial(metrics, reference=reference))
    flow.show(_show, _compare)

# --- both backends on the same clip -------------------------------------------------------------------------
with compare_tab:
    st.caption("Runs one model of each backend, one after the other, on the same clip with the same settings.")
    left, right = st.columns(2)
    with left:
        first = model_picker("openai-whisper model", task=speech.OPENAI_WHISPER, key="speech_compare_openai")
        english_only_note(first)
    with right:
        second = model_picker("faster-whisper model", task=speech.FASTER_WHISPER, key="speech_compare_faster")
        english_only_note(second)
    if reason := unavailable(first, second):
        st.caption(f"Cannot compare: {reason}")
    if st.button("Compare backends", type="primary", key="speech_compare_run", disabled=bool(reason)):
        st.session_state.pop("speech_comparison", None)
        with friendly_errors("Comparison"):
            clip = decoded_clip()
            show, slot = progress_view("Starting")
            try:
                with model_turn("transcribe"):
                    models = registry.load(first.key), registry.load(second.key)
                    both = speech.compare(models, clip, options, on_progress=show)
            finally:
                slot.empty()
            st.session_state["speech_comparison"] = (both, reference)
            for t in both.transcripts:
                record(t.measurement, "speech", "transcription", {"backend": t.backend, "compare": True, **params}, metrics(t, reference))
    if (stored := st.session_state.get("speech_comparison")) is not None:
        both, comparison_reference = stored
        a, b = both.transcripts
        fast, slow, ratio = (b, a, both.speed_ratio) if both.speed_ratio >= 1 else (a, b, 1 / both.speed_ratio)
        st.success(
            f"{fast.backend} ran {ratio:.1f}× faster than {slow.backend} (real-time factor "
            f"{fast.real_time_factor:.3f} vs {slow.real_time_factor:.3f}); the two transcripts differ "
            f"by a word error rate of {both.disagreement:.1%}.",
            icon=":material/compare_arrows:",
        )
        for column, t in zip(st.columns(2), both.transcripts):
            with column:
                st.subheader(t.backend)
                show_transcript(t, comparison_reference, f"speech_compare_{t.backend}", f" ({t.backend})")
        for t in both.transcripts:
            show_measurement(t.measurement)
