"""Audio in and out with PyAV (it bundles FFmpeg's codecs, so no ``ffmpeg`` binary is needed).

:func:`decode` turns any upload or recording (wav, mp3, m4a, ogg, flac, webm ...) into what
Whisper reads: 16 kHz mono float32 samples. Input that cannot be transcribed (empty, not audio,
too short, too long, silent) is refused with an :class:`~core.errors.InputError` whose message
says what to do; changes made on the way (resampling, down-mixing, a truncated file) are notes.
"""
from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field

import numpy as np

from core.config import get_settings
from core.errors import InputError

SAMPLE_RATE = 16_000
MIN_SECONDS = 0.3
SILENCE_DBFS = -60.0


def max_audio_seconds() -> float:
    """Longest audio accepted for transcription (``UBT_MAX_AUDIO_S``, default 600 s)."""
    return get_settings().max_audio_s


@dataclass(frozen=True)
class Audio:
    """Decoded audio ready for Whisper.

    Attributes:
        samples: mono float32 samples at :data:`SAMPLE_RATE`, in [-1, 1].
        source_rate: sample rate of the input.
        source_channels: channel count of the input.
        codec: the input's codec name (``mp3``, ``opus`` ...).
        notes: what was changed on the way, for people.
    """

    samples: np.ndarray = field(repr=False)
    source_rate: int
    source_channels: int
    codec: str
    notes: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE

    @property
    def peak_dbfs(self) -> float:
        """Loudest sample in dB relative to full scale (``-inf`` for digital silence)."""
        peak = float(np.max(np.abs(self.samples))) if len(self.samples) else 0.0
        return 20 * np.log10(peak) if peak > 0 else float("-inf")


def _fmt_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


def _too_long(seconds: float, limit: float, at_least: bool = False) -> InputError:
    return InputError(
        f"This audio is {'more than ' if at_least else ''}{_fmt_duration(seconds)} long; "
        f"the limit here is {_fmt_duration(limit)}. "
        "Cut it into shorter parts, or raise UBT_MAX_AUDIO_S on your own server."
    )


def _open(data: bytes, name: str):
    import av

    if not data:
        raise InputError(f"{name or 'The file'} is empty (0 bytes): upload or record some audio.")
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError):
        raise InputError(
            f"{name or 'This file'} cannot be read as audio: it is not an audio file (whatever its name "
            "says), or it is damaged or cut short. Try a wav, mp3, m4a, ogg, flac or webm file."
        ) from None
    if not container.streams.audio:
        container.close()
        raise InputError(f"{name or 'This file'} has no audio track.")
    return container


def _wav_declared_seconds(data: bytes) -> float | None:
    """Length a WAV header announces (FFmpeg goes by the file size, which hides truncation)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    position, byte_rate = 12, 0
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        if chunk == b"fmt " and position + 16 <= len(data):
            byte_rate = int.from_bytes(data[position + 16 : position + 20], "little")
        if chunk == b"data":
            return size / byte_rate if byte_rate and size < 0xFFFFFFFF else None  # streamed WAVs leave the size unset
        position += 8 + size + size % 2
    return None


MAX_RATE = 384_000  # the highest sample rate of real recording gear; higher "rates" are damaged headers


def _check_rate(rate: int, name: str) -> None:
    if rate > MAX_RATE:
        raise InputError(
            f"{name or 'This file'} declares a sample rate of {rate:,} Hz, above the {MAX_RATE:,} Hz any real "
            "recording uses; the file is probably damaged."
        )


def decode(data: bytes, name: str = "", max_seconds: float | None = None) -> Audio:
    """Decode audio bytes of any common format to 16 kHz mono float32, and check them.

    Args:
        data: the file's bytes (an upload or a microphone recording).
        name: the file name, used in messages only (the format is read from the contents).
        max_seconds: longest accepted duration; :func:`max_audio_seconds` when None.

    Returns:
        The Audio, with notes on resampling, down-mixing and truncation.

    Raises:
        InputError: empty, not audio, no audio track, nothing decodable, shorter than
            :data:`MIN_SECONDS`, longer than ``max_seconds``, or silent.
    """
    import av

    limit = max_audio_seconds() if max_seconds is None else max_seconds
    container = _open(data, name)
    with container:
        stream = container.streams.audio[0]
        declared_s = _wav_declared_seconds(data) or (container.duration / av.time_base if container.duration else None)
        if declared_s and declared_s > limit:
            raise _too_long(declared_s, limit)
        try:
            rate, channels, codec = stream.rate or 0, stream.channels or 0, stream.codec_context.name
        except AttributeError:  # PyAV found a stream but no decoder for it
            raise InputError(f"{name or 'This file'} uses an audio codec that cannot be decoded here.") from None
        _check_rate(rate, name)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks, decoded, damaged, ends_damaged = [], 0, 0, False
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:
                damaged, ends_damaged = damaged + 1, True  # skip a bad packet, as FFmpeg's own tools do
                continue
            except (av.error.FFmpegError, EOFError):
                ends_damaged = True
                break
            ends_damaged = False
            frame.pts = None  # timestamps of damaged or concatenated files may jump
            rate, channels = frame.sample_rate or rate, frame.layout.nb_channels or channels
            _check_rate(rate, name)
            try:
                outs = resampler.resample(frame)
            except ValueError:  # the frames changed format mid-stream: flush, then start a new resampler
                chunks += [out.to_ndarray()[0] for out in resampler.resample(None)]
                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                try:
                    outs = resampler.resample(frame)
                except (ValueError, av.error.FFmpegError):
                    raise InputError(f"{name or 'This file'} could not be decoded: its audio frames are inconsistent.") from None
            for out in outs:
                chunks.append(out.to_ndarray()[0])
                decoded += out.samples
            if decoded > limit * SAMPLE_RATE:
                raise _too_long(decoded / SAMPLE_RATE, limit, at_least=True)
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray()[0])
    samples = np.ascontiguousarray(np.concatenate(chunks) if chunks else np.zeros(0, np.float32), dtype=np.float32)
    np.clip(samples, -1.0, 1.0, out=samples)
    if not len(samples):
        raise InputError(f"{name or 'This file'} contains no audio that could be decoded (it may be truncated or damaged).")
    audio = Audio(samples, rate, channels, codec, tuple(_notes(samples, rate, channels, declared_s, damaged, ends_damaged)))
    _check(audio, limit)
    return audio


def _notes(samples: np.ndarray, rate: int, channels: int, declared_s: float | None, damaged: int, ends_damaged: bool) -> list[str]:
    notes = []
    seconds = len(samples) / SAMPLE_RATE
    if ends_damaged or (declared_s and declared_s - seconds > max(0.5, 0.05 * declared_s)):
        expected = f" of the {_fmt_duration(declared_s)} its header announces" if declared_s and declared_s > seconds + 0.1 else ""
        notes.append(f"The file ends early (it looks truncated or damaged): transcribing the {_fmt_duration(seconds)}{expected} that could be read.")
    if damaged > ends_damaged:
        notes.append(f"{damaged - ends_damaged} damaged part(s) inside the file were skipped.")
    if channels > 1:
        notes.append(f"Mixed {channels} channels down to mono.")
    if rate and rate != SAMPLE_RATE:
        notes.append(f"Resampled from {rate / 1000:g} kHz to {SAMPLE_RATE / 1000:g} kHz, the rate Whisper reads.")
    return notes


def _check(audio: Audio, limit: float) -> None:
    if audio.duration_s < MIN_SECONDS:
        raise InputError(
            f"This clip is only {audio.duration_s:.2f} s long; Whisper needs at least {MIN_SECONDS} s of speech. "
            "Record or upload a longer clip."
        )
    if audio.duration_s > limit:
        raise _too_long(audio.duration_s, limit)
    if audio.peak_dbfs < SILENCE_DBFS:
        level = "digital silence" if audio.peak_dbfs == float("-inf") else f"its loudest moment is {audio.peak_dbfs:.0f} dBFS"
        raise InputError(
            f"This audio is silent ({level}): there is nothing to transcribe. "
            "Check that the microphone is on and not muted, or pick another file."
        )


_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}


def encode(
    samples: np.ndarray, rate: int, container: str, codec: str, bit_rate: int | None = None,
    options: dict[str, str] | None = None,
) -> bytes:
    """Encode samples to a file in memory (used to make the bundled sample and test files).

    Args:
        samples: float32 array, shape (n,) for mono or (channels, n) with 1, 2, 6 or 8 channels.
        rate: sample rate of ``samples`` (and of the file; pick one the codec supports).
        container: PyAV format name: ``wav``, ``mp3``, ``ipod`` (m4a), ``ogg``, ``flac``, ``webm`` ...
        codec: PyAV encoder name: ``pcm_s16le``, ``libmp3lame``, ``aac``, ``libvorbis``, ``libopus``, ``flac`` ...
        bit_rate: target bits per second for lossy codecs, or None for the codec's default.
        options: muxer options, e.g. ``{"live": "1"}`` for a webm without a duration, as browsers record.

    Returns:
        The encoded file's bytes.
    """
    import av

    planes = np.atleast_2d(np.asarray(samples, dtype=np.float32))
    layout = _LAYOUTS[len(planes)]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container, options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        interleaved = np.ascontiguousarray(planes.T).reshape(1, -1)  # packed frames take 8 channels too
        frame = av.AudioFrame.from_ndarray(interleaved, format="flt", layout=layout)
        frame.sample_rate = rate
        target = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=target, layout=layout, rate=rate, frame_size=stream.codec_context.frame_size or None)
        for chunk in itertools.chain(resampler.resample(frame), resampler.resample(None)):
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return buffer.getvalue()
