"""Speech to text with Whisper, through two backends: openai-whisper (PyTorch) and faster-whisper
(CTranslate2, int8).

Modules: :mod:`~core.speech.models` (the two backends' models, as the registry loads them),
:mod:`~core.speech.transcription` (options, the segment stream, :func:`transcribe`, :func:`compare`, speech coverage)
and :mod:`~core.speech.scoring` (word error rate, subtitles, the sample clip). Their public names are re-exported
here, so ``speech.transcribe(model, clip)`` is the way to call them; stand-ins are set on the module that reads them.
"""
from __future__ import annotations

from core.speech.models import (BACKENDS, FASTER_WHISPER, OPENAI_WHISPER, CT2Whisper, TorchWhisper, backend,
                                english_only, load_faster_whisper, load_openai_whisper)
from core.speech.scoring import (SAMPLE_AUDIO, SAMPLE_TRANSCRIPT, audio_rate, language_names, sample_clip, to_srt,
                                 transcript_metrics, word_error_rate, words)
from core.speech.transcription import (COVERAGE_WARNING, LIVE_LINES, SEGMENT_SLACK_S, WINDOW_S, Comparison, Segment,
                                       Transcript, TranscribeOptions, TranscriptionStream, Window, check_options,
                                       compare, repeats_itself, transcribe, windows)

__all__ = [
    "BACKENDS", "FASTER_WHISPER", "OPENAI_WHISPER", "CT2Whisper", "TorchWhisper", "backend", "english_only",
    "load_faster_whisper", "load_openai_whisper",
    "SAMPLE_AUDIO", "SAMPLE_TRANSCRIPT", "audio_rate", "language_names", "sample_clip", "to_srt", "transcript_metrics",
    "word_error_rate", "words",
    "COVERAGE_WARNING", "LIVE_LINES", "SEGMENT_SLACK_S", "WINDOW_S", "Comparison", "Segment", "Transcript",
    "TranscribeOptions", "TranscriptionStream", "Window", "check_options", "compare", "repeats_itself", "transcribe",
    "windows",
]
