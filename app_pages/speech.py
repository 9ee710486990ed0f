"""Speech page: transcribe the sample, an upload or a recording with Whisper, here, on a hosted API, or both side by
side; compare two local backends."""
import streamlit as st

from functools import partial

from core import audio, providers, registry, speech
from core.errors import InputError
from ui.common import friendly_errors, record
from ui.hosted import HOSTED, LOCAL, hosted_endpoint, where_picker
from ui.queue import model_turn
from ui.run_on import Here, RunOn, There, progress_view
from ui.sidebar import model_picker
from ui.views.speech import compare_hosted, load_checked, show_comparison, transcript_view

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


transcribe_tab, compare_tab = st.tabs(["One model", "Side by side"])


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
            here = run_here and Here(partial(load_checked, spec, options), partial(speech.transcribe, clip=clip, options=options),
                                     "transcribe", f"Transcribing with {spec.title} ...",
                                     progress=f"Loading {spec.title} and reading the first 30 s")
            there = run_hosted and There(point, partial(providers.transcribe, clip=clip, options=options),
                                         f"{clip.duration_s:.0f} s of audio")
            flow.run(here or None, there or None, params=params, local_params={"backend": backend if run_here else ""},
                     hosted_params={"backend": "hosted"}, metrics=partial(speech.transcript_metrics, reference=reference))
    flow.show(transcript_view(reference), compare_hosted(point.prices.per_audio_minute if point is not None else 0.0))

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
            for chosen in (first, second):
                speech.check_options(chosen, options)
            show, slot = progress_view("Starting")
            try:
                with model_turn("transcribe"):
                    models = registry.load(first.key), registry.load(second.key)
                    both = speech.compare(models, clip, options, on_progress=show)
            finally:
                slot.empty()
            st.session_state["speech_comparison"] = (both, reference)
            for t in both.transcripts:
                record(t.measurement, "speech", "transcription", {"backend": t.backend, "compare": True, **params},
                       speech.transcript_metrics(t, reference))
    if (stored := st.session_state.get("speech_comparison")) is not None:
        show_comparison(*stored)
