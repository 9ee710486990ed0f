"""Hosted speech to text: OpenAI's ``/audio/transcriptions`` (multipart), also served by ``faster-whisper-server``."""
from __future__ import annotations

import time

from core.errors import InputError
from core.providers.endpoints import TRANSCRIPTION, Endpoint
from core.providers.http import (HostedError, check_reachable, hosted_measurement, post, read_json, require_key,
                                 with_one_retry)


def _language_code(name: str | None) -> str:
    """Whisper's code for a language the endpoint named (OpenAI's ``verbose_json`` says ``english``)."""
    if not name:
        return "unknown"
    from core.speech import language_names

    codes = {full.lower(): code for code, full in language_names().items()}
    return codes.get(name.lower(), name.lower())


def transcribe(point: Endpoint, clip, options=None, sleep=time.sleep):
    """Transcribe a clip on an OpenAI-compatible ``/audio/transcriptions`` endpoint (``/audio/translations`` when
    translating into English); the clip is sent as 16 kHz mono 16-bit WAV, as decoded for the local models.

    Args:
        point: an endpoint whose provider speaks :data:`TRANSCRIPTION`.
        clip: a :class:`core.audio.Audio`.
        options: a :class:`core.speech.TranscribeOptions` (language and translation are sent; beam size is the server's).
        sleep: how to wait before the one retry after a 429.

    Returns:
        A :class:`core.speech.Transcript` like a local one (segments with times when the endpoint gives them,
        else one segment), whose measurement has real_time_factor, audio_s_per_s and cost_usd (per audio minute).
    """
    from core import audio, speech

    options = options or speech.TranscribeOptions()
    if TRANSCRIPTION not in point.provider.kinds:
        raise InputError(f"{point.provider.title} does not transcribe here; pick another provider.")
    require_key(point)
    check_reachable(point)
    wav = audio.encode(clip.samples, audio.SAMPLE_RATE, "wav", "pcm_s16le")
    verbose = "whisper" in point.model.lower()  # newer OpenAI models answer plain json only
    form = {"model": point.model, "response_format": "verbose_json" if verbose else "json", "temperature": "0"}
    if options.language and not options.translate:
        form["language"] = options.language
    path = "/audio/translations" if options.translate else "/audio/transcriptions"

    def call() -> dict:
        return read_json(post(point, path, files={"file": ("audio.wav", wav, "audio/wav")}, data=form), point)

    start = time.perf_counter()
    answer = with_one_retry(call, point, sleep)
    seconds = time.perf_counter() - start
    text = answer.get("text")
    if not isinstance(text, str):
        raise HostedError("malformed", f"{point.provider.title} sent a transcription without text.")
    duration = clip.duration_s
    try:
        segments = [speech.Segment(float(s["start"]), float(s["end"]), str(s["text"])) for s in answer.get("segments") or []]
    except (KeyError, TypeError, ValueError):
        raise HostedError("malformed", f"{point.provider.title} sent segments this app cannot read.") from None
    notes = list(clip.notes)
    if not segments and text.strip():
        segments = [speech.Segment(0.0, duration, text)]
        notes.append(f"{point.provider.title} sent the text without segment times: it counts as one segment.")
    if not text.strip():
        notes.append("The endpoint recognised no speech in this audio, so the transcript is empty.")
    extra = {"real_time_factor": seconds / duration, "audio_s": duration,
             "audio_s_per_s": duration / seconds if seconds > 0 else 0.0,
             "cost_usd": point.prices.per_audio_minute * duration / 60}
    language = options.language if options.language and not options.translate else _language_code(answer.get("language"))
    return speech.Transcript(point.label, "hosted", segments, language, None, duration, notes,
                             hosted_measurement(point, seconds, **extra), speech.windows(clip, segments))
