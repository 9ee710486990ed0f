"""Scoring and export of transcripts: word error rate (:mod:`core.wer`), SubRip subtitles, the figures a run
records; the bundled sample clip with its known transcript, and Whisper's language names."""
from __future__ import annotations

from functools import lru_cache

from core.catalog import ASSETS
from core.measure import Measurement
from core.wer import word_error_rate, words  # noqa: F401  (re-exported: speech.words, speech.word_error_rate)

SAMPLE_AUDIO = ASSETS / "audio" / "sample.flac"
SAMPLE_TRANSCRIPT = ASSETS / "audio" / "sample.txt"


def _srt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def to_srt(segments: list) -> str:
    """Subtitles in SubRip (.srt) format, one cue per non-empty :class:`~core.speech.transcription.Segment`."""
    cues = [s for s in segments if s.text.strip()]
    return "\n".join(
        f"{i}\n{_srt_time(s.start)} --> {_srt_time(s.end)}\n{s.text.strip()}\n" for i, s in enumerate(cues, start=1)
    )


def sample_clip() -> tuple[bytes, str]:
    """The bundled sample clip (FLAC bytes) and its known transcript (see scripts/make_sample_audio.py)."""
    return SAMPLE_AUDIO.read_bytes(), SAMPLE_TRANSCRIPT.read_text(encoding="utf-8").strip()


@lru_cache(maxsize=1)
def language_names() -> dict[str, str]:
    """Whisper's languages, code -> name (imports openai-whisper, and so torch: call it only when needed)."""
    from whisper.tokenizer import LANGUAGES

    return dict(LANGUAGES)


def transcript_metrics(transcript, reference: str | None) -> dict:
    """What the run store keeps of a transcript's quality: segments, speech coverage, and the word error rate
    against ``reference`` when the clip has a known text."""
    wer = {} if reference is None else {"word_error_rate": word_error_rate(reference, transcript.text)}
    return {"segments": len(transcript.segments), "speech_coverage": transcript.coverage, **wer}


def audio_rate(m: Measurement) -> float:
    """Audio seconds transcribed per second of processing."""
    return m.extra.get("audio_s_per_s") or m.extra["audio_s"] / max(m.latency_s, 1e-9)
