"""Transcription with either backend, one shape for both: decoded audio (:mod:`core.audio`, 16 kHz mono float32,
never a file path) -> segments as they are decoded (:class:`TranscriptionStream`, a generator the page turns into a
progress bar) -> a :class:`Transcript` that carries its measurement (latency, real-time factor, peak memory) and says
how much of the clip's speech its segments cover, window by window (:func:`windows`). :func:`compare` runs two models
on one clip.

Decoding is deterministic by default: temperature 0 only, and no window is prompted with the
previous one's text. Measured on 75 s of the sample repeated (tests/tiny_speech.long_speech),
faster-whisper tiny.en with both libraries' defaults (sampling fallback up to temperature 1.0,
conditioned on previous text) gave differing transcripts over 5 runs, one of them "Sri Sri Sri ..."
for 0-30 s, and seeding CTranslate2 (``set_random_seed``) did not make them agree; temperature 0
gave the same complete transcript in every run, decoding each window once.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from core import registry
from core.audio import SAMPLE_RATE, SILENCE_DBFS, Audio
from core.catalog import ModelSpec
from core.device import choose_device
from core.engines import CTRANSLATE2, TORCH
from core.errors import InputError
from core.measure import Measurement, PeakTracker
from core.progress import OnProgress, Progress, ignore
from core.speech.models import CT2Whisper, TorchWhisper, backend, english_only
from core.speech.scoring import word_error_rate

WINDOW_S = 30  # Whisper reads 30 s of audio at a time
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # both libraries' default
REPEATS_RATIO = 2.4  # both libraries' compression-ratio threshold: text above it repeats itself
FRAME_S = 0.05  # speech is measured in frames this long
BELOW_PEAK_DB = 40.0  # a frame this much quieter than the loudest one is silence
SEGMENT_SLACK_S = 0.3  # Whisper's segment times may be off by about this much
COVERAGE_WARNING = 0.9  # warn when the segments cover less of the speech than this


# --- options and results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode.

    Attributes:
        language: a language code (``en``, ``fr`` ...), or None to detect it from the first 30 s.
        translate: translate into English instead of transcribing (multilingual models only).
        beam_size: 1 for greedy decoding; 5 is both libraries' command-line default.
        fallback: decode again at higher temperatures, by sampling, when the output looks wrong
            (repetitive or unlikely), as both libraries do by default. Off (the default here) means
            temperature 0 only, so the same clip always gives the same transcript; sampling cannot
            be seeded reliably (see the module docstring).
        max_tokens: most tokens decoded per 30 s window, or None for the libraries' default (half
            the text context: 224 for the real models).
    """

    language: str | None = None
    translate: bool = False
    beam_size: int = 5
    fallback: bool = False
    max_tokens: int | None = None

    @property
    def task(self) -> str:
        return "translate" if self.translate else "transcribe"

    @property
    def temperatures(self) -> tuple[float, ...]:
        return FALLBACK_TEMPERATURES if self.fallback else (0.0,)


@dataclass(frozen=True)
class Segment:
    """A stretch of speech with its text, times in seconds from the start of the clip."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Window:
    """One 30 s stretch of the clip: how much speech (non-silent audio) it holds and how much of
    that the segments cover, in seconds."""

    start: float
    end: float
    speech_s: float
    covered_s: float

    @property
    def transcribed(self) -> bool:
        """Whether the segments cover at least half of its speech (a window without speech misses nothing)."""
        return self.covered_s >= 0.5 * self.speech_s

    @property
    def status(self) -> str:
        """``transcribed``, ``not transcribed`` or ``no speech``."""
        return "no speech" if not self.speech_s else "transcribed" if self.transcribed else "not transcribed"

    @property
    def label(self) -> str:
        """Its time range, e.g. ``30–60 s``."""
        end = f"{self.end:g}" if self.end == int(self.end) else f"{self.end:.1f}"
        return f"{self.start:g}–{end} s"


@dataclass
class Transcript:
    """The text of a clip, its segments, the language, and what it cost.

    Attributes:
        key: catalog key of the model.
        backend: ``openai-whisper`` or ``faster-whisper``.
        segments: in order, with times.
        language: code of the detected (or fixed) language.
        language_probability: the detector's probability, None when the language was not detected
            (fixed by the user, or an English-only model).
        audio_s: length of the clip.
        notes: what people should know about the input and the output.
        measurement: load time, latency, real-time factor, peak memory.
        windows: each 30 s window's speech and how much of it the segments cover.
    """

    key: str
    backend: str
    segments: list[Segment]
    language: str
    language_probability: float | None
    audio_s: float
    notes: list[str]
    measurement: Measurement
    windows: list[Window] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        """Fraction of the clip's speech that the segments cover (1.0 for a clip without speech)."""
        speech = sum(w.speech_s for w in self.windows)
        return sum(w.covered_s for w in self.windows) / speech if speech else 1.0

    @property
    def warnings(self) -> list[str]:
        """What went wrong in the output: speech left untranscribed (with the windows' time ranges),
        segments that repeat themselves."""
        warnings = []
        missed = [w.label for w in self.windows if not w.transcribed]
        if missed or self.coverage < COVERAGE_WARNING:
            warnings.append(
                f"The segments cover {self.coverage:.0%} of the speech in this clip (its non-silent audio). "
                + (f"Not transcribed: {', '.join(missed)}. " if missed else "")
                + f"The real-time factor counts all {self.audio_s:.1f} s the model read."
            )
        return warnings + [
            f"The segment at {s.start:.1f}–{s.end:.1f} s repeats itself, like a decoding loop: it is not what "
            "was said, so it counts as untranscribed." for s in self.segments if repeats_itself(s.text)
        ]

    @property
    def text(self) -> str:
        """The whole transcript."""
        return "".join(s.text for s in self.segments).strip()

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio duration (below 1: faster than real time)."""
        return self.measurement.extra["real_time_factor"]


def check_options(spec: ModelSpec, options: TranscribeOptions) -> None:
    """Refuse, before any model loads, options the model cannot honour (InputError): translation or another
    language on an English-only model."""
    if not english_only(spec):
        return
    if options.translate:
        raise InputError(f"{spec.title} is English-only: it cannot translate. Pick a multilingual model (one without .en).")
    if options.language not in (None, "en"):
        raise InputError(f"{spec.title} is English-only: it cannot transcribe language '{options.language}'. Pick a multilingual model.")


# --- how much of the speech the segments cover ---------------------------------------------------------
def repeats_itself(text: str) -> bool:
    """Whether text compresses like a decoding loop ("S, t, t, t, ..."): zlib ratio above :data:`REPEATS_RATIO`."""
    data = text.strip().encode("utf-8")
    return bool(data) and len(data) / len(zlib.compress(data)) > REPEATS_RATIO


def _speech_frames(samples: np.ndarray) -> np.ndarray:
    """One flag per :data:`FRAME_S` frame: louder than silence (:data:`SILENCE_DBFS`, and within
    :data:`BELOW_PEAK_DB` of the loudest frame)."""
    size = int(FRAME_S * SAMPLE_RATE)
    frames = samples[: len(samples) // size * size].reshape(-1, size).astype(np.float64)
    if not len(frames):
        return np.zeros(0, bool)
    level = 10 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-20))
    return level > max(SILENCE_DBFS, level.max() - BELOW_PEAK_DB)


def windows(clip: Audio, segments: list[Segment]) -> list[Window]:
    """How much of the speech in each 30 s window of the clip the segments cover.

    Speech is the non-silent audio (frame energy, so a noisy recording counts its noise too); a
    segment covers the speech between its start and end, give or take :data:`SEGMENT_SLACK_S`.
    A segment whose text repeats itself (:func:`repeats_itself`) covers nothing.

    Args:
        clip: the audio that was transcribed.
        segments: its segments, times in seconds from the start of the clip.

    Returns:
        One Window per 30 s of the clip, the last one shorter.
    """
    speech = _speech_frames(clip.samples)
    centres = (np.arange(len(speech)) + 0.5) * FRAME_S
    covered = np.zeros(len(speech), bool)
    for s in segments:
        if s.text.strip() and not repeats_itself(s.text):
            covered |= (centres >= s.start - SEGMENT_SLACK_S) & (centres <= s.end + SEGMENT_SLACK_S)
    found = []
    for start in range(0, max(int(np.ceil(clip.duration_s / WINDOW_S)), 1) * WINDOW_S, WINDOW_S):
        inside = (centres >= start) & (centres < start + WINDOW_S)
        found.append(Window(
            start, min(start + WINDOW_S, round(clip.duration_s, 2)),
            round(float(np.sum(speech & inside)) * FRAME_S, 2), round(float(np.sum(speech & covered & inside)) * FRAME_S, 2),
        ))
    return found


# --- the two backends -------------------------------------------------------------------------------
SegmentSource = tuple[str, float | None, Iterator[Segment]]


def _openai_decode(runner: TorchWhisper, clip: Audio, options: TranscribeOptions) -> SegmentSource:
    """Detect the language from the first 30 s, then decode window by window."""
    import torch
    import whisper

    model = runner.model
    if not model.is_multilingual:
        return "en", None, _openai_windows(runner, clip, options, "en")
    if options.language:
        return options.language, None, _openai_windows(runner, clip, options, options.language)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(clip.samples), model.dims.n_mels).to(model.device)
    with runner.lock, torch.inference_mode():
        _, probs = model.detect_language(mel)
    language = max(probs, key=probs.get)
    return language, float(probs[language]), _openai_windows(runner, clip, options, language)


def _openai_windows(runner: TorchWhisper, clip: Audio, options: TranscribeOptions, language: str) -> Iterator[Segment]:
    """openai-whisper's transcribe() returns only at the end, so feed it one 30 s window at a time.

    A window's last segment may be cut by the window's end: unless it is the clip's last window,
    it is dropped and decoded again at the start of the next window, which begins where the last
    kept segment ended. No window is prompted with the previous one's text: without a sampling
    fallback to reset the prompt, a bad window would carry its errors into the next.
    """
    import torch
    import whisper

    fp16 = runner.model.device.type == "cuda"
    window = WINDOW_S * SAMPLE_RATE
    samples, position = clip.samples, 0
    while position < len(samples):
        chunk = samples[position : position + window]
        last = position + window >= len(samples)
        with runner.lock, torch.inference_mode():
            found = whisper.transcribe(
                runner.model, chunk, verbose=None, language=language, task=options.task,
                temperature=options.temperatures, beam_size=options.beam_size if options.beam_size > 1 else None,
                condition_on_previous_text=False, fp16=fp16, sample_len=options.max_tokens,
            )["segments"]
        step = len(chunk)
        if not last and len(found) > 1 and found[-2]["end"] >= 1.0:
            found = found[:-1]
            step = int(found[-1]["end"] * SAMPLE_RATE)
        offset = position / SAMPLE_RATE
        for s in found:
            start = min(offset + s["start"], clip.duration_s)
            yield Segment(start, min(max(offset + s["end"], start), clip.duration_s), s["text"])
        position += step


def _faster_decode(runner: CT2Whisper, clip: Audio, options: TranscribeOptions) -> SegmentSource:
    """faster-whisper detects the language at once and yields segments lazily as it decodes (no
    window is prompted with the previous one's text, as in :func:`_openai_windows`)."""
    segments, info = runner.model.transcribe(
        clip.samples, language=options.language, task=options.task, beam_size=options.beam_size,
        temperature=list(options.temperatures), max_new_tokens=options.max_tokens, vad_filter=False,
        condition_on_previous_text=False,
    )
    detected = options.language is None and runner.model.model.is_multilingual
    probability = float(info.language_probability) if detected else None
    return info.language, probability, (Segment(s.start, min(s.end, clip.duration_s), s.text) for s in segments)


# --- transcription ------------------------------------------------------------------------------------
class TranscriptionStream:
    """Transcribe a clip with a loaded model; iterate to get segments as they are decoded.

    ``progress`` (0 to 1) says how much of the clip is done; ``result`` holds the Transcript
    once the iteration ends.

    Args:
        loaded: a speech model from :func:`core.registry.load`.
        clip: output of :func:`core.audio.decode`.
        options: language, translation, beam size.

    Raises:
        InputError: at construction, for options the model cannot honour (translation or a
            language other than English on an English-only model).
    """

    def __init__(self, loaded: registry.Loaded, clip: Audio, options: TranscribeOptions = TranscribeOptions()) -> None:
        self.loaded, self.spec = loaded, loaded.spec
        check_options(self.spec, options)
        self.clip, self.options = clip, options
        self.progress = 0.0
        self.result: Transcript | None = None

    def __iter__(self) -> Iterator[Segment]:
        loaded = self.loaded
        runner = loaded.model
        duration = self.clip.duration_s
        segments: list[Segment] = []
        with PeakTracker() as tracker:
            start = time.perf_counter()
            if isinstance(runner, CT2Whisper):
                language, probability, source = _faster_decode(runner, self.clip, self.options)
                device, engine = f"cpu · int8 · {runner.threads} thread(s)", CTRANSLATE2
            else:
                language, probability, source = _openai_decode(runner, self.clip, self.options)
                device, engine = None, TORCH  # the model's own device label and number format
            for segment in source:
                segments.append(segment)
                self.progress = min(segment.end / duration, 1.0)
                yield segment
            seconds = time.perf_counter() - start
        self.progress = 1.0
        measurement = loaded.measurement(
            seconds, tracker.peak_mb, device=device, engine=engine, real_time_factor=seconds / duration, audio_s=duration,
        )
        self.result = Transcript(
            self.spec.key, backend(self.spec), segments, language, probability, duration,
            list(self.clip.notes) + self._notes(segments), measurement, windows(self.clip, segments),
        )

    def _notes(self, segments: list[Segment]) -> list[str]:
        notes = []
        if english_only(self.spec):
            notes.append(f"{self.spec.title} is English-only: the language is English, not detected.")
        if not "".join(s.text for s in segments).strip():
            notes.append("The model recognised no speech in this audio, so the transcript is empty.")
        return notes


LIVE_LINES = 12  # the transcript's last lines shown while it is decoded


def transcribe(loaded: registry.Loaded, clip: Audio, options: TranscribeOptions = TranscribeOptions(),
               on_progress: OnProgress = ignore) -> Transcript:
    """Transcribe a clip with a loaded model, as openai-whisper's ``transcribe(model, audio)`` does.

    Args:
        loaded: a speech model from :func:`core.registry.load`.
        clip: output of :func:`core.audio.decode`.
        options: language, translation, beam size.
        on_progress: told the seconds of audio done at each segment; its ``preview`` is the transcript's last lines.

    Returns:
        The finished Transcript.
    """
    stream = TranscriptionStream(loaded, clip, options)
    lines = []
    for segment in stream:
        lines.append(f"`{segment.start:6.1f} s` {segment.text.strip()}")
        on_progress(Progress(min(segment.end, clip.duration_s), clip.duration_s,
                             f"Transcribed {segment.end:.0f} s of {clip.duration_s:.0f} s", preview="  \n".join(lines[-LIVE_LINES:])))
    return stream.result


@dataclass
class Comparison:
    """Two transcripts of one clip, and how far apart they are.

    Attributes:
        transcripts: one per model, in the order asked.
        disagreement: word error rate of the second transcript measured against the first.
    """

    transcripts: list[Transcript]
    disagreement: float

    @property
    def speed_ratio(self) -> float:
        """How many times faster the second model ran than the first (ratio of real-time factors)."""
        first, second = (t.real_time_factor for t in self.transcripts)
        return first / max(second, 1e-9)


def compare(models: tuple[registry.Loaded, registry.Loaded], clip: Audio, options: TranscribeOptions = TranscribeOptions(),
            on_progress: OnProgress = ignore) -> Comparison:
    """Run two loaded models, one after the other, on the same clip with the same options.

    Args:
        models: two speech models (typically one per backend).
        clip: output of :func:`core.audio.decode`.
        options: used for both.
        on_progress: told the overall share done, with a line of text, at each segment.

    Returns:
        The Comparison.

    Raises:
        InputError: when either model cannot honour the options (checked before running anything).
    """
    streams = [TranscriptionStream(loaded, clip, options) for loaded in models]
    for i, stream in enumerate(streams):
        on_progress(Progress(i, len(streams), f"{stream.spec.title}: starting ..."))
        for segment in stream:
            on_progress(Progress(i + stream.progress, len(streams),
                                 f"{stream.spec.title}: {segment.end:.0f} s of {clip.duration_s:.0f} s"))
    first, second = (s.result for s in streams)
    return Comparison([first, second], word_error_rate(first.text, second.text))
