"""core.audio: every listed format decodes to 16 kHz mono float32; bad input gets a clear message."""
import hashlib
import json

import numpy as np
import pytest

from core import audio, speech
from core.errors import InputError
from tests.support.tiny_speech import tone

# (container, encoder, sample rate): wav, mp3, m4a/aac, ogg/vorbis, ogg/opus, flac, webm/opus
FORMATS = [
    ("wav", "pcm_s16le", 44_100),
    ("mp3", "libmp3lame", 44_100),
    ("ipod", "aac", 44_100),
    ("ogg", "libvorbis", 44_100),
    ("ogg", "libopus", 48_000),
    ("flac", "flac", 44_100),
    ("webm", "libopus", 48_000),
]


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / audio.SAMPLE_RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize("container,codec,rate", FORMATS, ids=[f"{c}-{k}" for c, k, _ in FORMATS])
def test_every_listed_format_decodes_to_16k_mono_float32(container, codec, rate):
    data = audio.encode(tone(1.5, rate), rate, container, codec)
    clip = audio.decode(data, f"tone.{container}")
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration_s == pytest.approx(1.5, abs=0.06)  # encoders pad a few ms
    assert (clip.source_rate, clip.source_channels) == (rate, 1)
    assert dominant_hz(clip.samples) == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(clip.samples[4000:-4000] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)  # lossy codecs shave a little
    assert clip.notes == (f"Resampled from {rate / 1000:g} kHz to 16 kHz, the rate Whisper reads.",)


def test_16k_mono_input_is_kept_as_it_is():
    samples = tone(1.0)
    clip = audio.decode(audio.encode(samples, audio.SAMPLE_RATE, "wav", "pcm_s16le"))
    assert clip.notes == ()
    np.testing.assert_allclose(clip.samples, samples, atol=1 / 32768)


def test_eight_channels_at_96k_are_mixed_down_and_resampled():
    data = audio.encode(tone(1.0, 96_000, channels=8), 96_000, "wav", "pcm_s16le")
    clip = audio.decode(data, "surround.wav")
    assert (clip.source_rate, clip.source_channels) == (96_000, 8)
    assert clip.samples.shape == (16_000,)
    assert clip.notes == ("Mixed 8 channels down to mono.", "Resampled from 96 kHz to 16 kHz, the rate Whisper reads.")


def test_the_bundled_sample_matches_its_record():
    data, transcript = speech.sample_clip()
    record = json.loads((speech.SAMPLE_AUDIO.parent / "sample.json").read_text())
    assert hashlib.sha256(data).hexdigest() == record["sha256"] and len(data) < 300_000
    clip = audio.decode(data, "sample.flac")
    assert clip.duration_s == pytest.approx(record["seconds"], abs=0.01) and clip.notes == ()
    assert len(transcript.split()) >= 15


# --- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data,message", [
    (b"", r"empty \(0 bytes\)"),
    (b"RIFF\x00\x00\x00\x00WAVE but not really audio" * 20, "cannot be read as audio"),
    (b"%PDF-1.4 a document renamed to .wav\n" * 50, "cannot be read as audio"),
])
def test_empty_and_non_audio_files_are_refused(data, message):
    with pytest.raises(InputError, match=message):
        audio.decode(data, "upload.wav")


def test_a_file_cut_in_the_middle_transcribes_what_is_there_with_a_note():
    data = audio.encode(tone(2.0, 44_100), 44_100, "mp3", "libmp3lame")
    clip = audio.decode(data[: len(data) // 2], "cut.mp3")
    assert 0.7 < clip.duration_s < 1.3
    assert "ends early" in clip.notes[0] and "2.0 s its header announces" in clip.notes[0]


@pytest.mark.parametrize("extra_byte", [0, 1], ids=["between-samples", "mid-sample"])
def test_a_wav_cut_short_gets_the_truncation_note(extra_byte):
    data = audio.encode(tone(1.0), audio.SAMPLE_RATE, "wav", "pcm_s16le")
    clip = audio.decode(data[: len(data) // 2 + extra_byte], "cut.wav")
    assert 0.4 < clip.duration_s <= 0.5  # FFmpeg may drop the last, partial packet
    assert "ends early" in clip.notes[0] and "1.0 s its header announces" in clip.notes[0]


def test_a_file_cut_inside_its_header_is_refused():
    data = audio.encode(tone(1.0), audio.SAMPLE_RATE, "ogg", "libvorbis")
    with pytest.raises(InputError, match="cannot be read as audio"):
        audio.decode(data[:200], "cut.ogg")


def test_silence_is_refused_with_a_message():
    with pytest.raises(InputError, match="silent .digital silence."):
        audio.decode(audio.encode(np.zeros(16_000, np.float32), 16_000, "wav", "pcm_s16le"))
    hiss = np.random.default_rng(0).normal(0, 1e-4, 16_000).astype(np.float32)
    with pytest.raises(InputError, match="silent .its loudest moment is -6. dBFS"):
        audio.decode(audio.encode(hiss, 16_000, "flac", "flac"))


def test_a_clip_under_0_3_s_is_refused():
    with pytest.raises(InputError, match="only 0.20 s long"):
        audio.decode(audio.encode(tone(0.2), 16_000, "wav", "pcm_s16le"))


def test_audio_over_the_limit_is_refused_before_decoding_it_all(monkeypatch):
    data = audio.encode(tone(3.0), 16_000, "flac", "flac")
    with pytest.raises(InputError, match="3.0 s long; the limit here is 2.0 s"):
        audio.decode(data, max_seconds=2.0)
    from core.config import get_settings

    monkeypatch.setenv("UBT_MAX_AUDIO_S", "1")
    get_settings.cache_clear()
    try:
        assert audio.max_audio_seconds() == 1.0
        with pytest.raises(InputError, match="the limit here is 1.0 s"):
            audio.decode(data)
    finally:
        get_settings.cache_clear()


def test_the_limit_holds_for_streams_that_do_not_declare_their_length():
    data = audio.encode(tone(3.0, 48_000), 48_000, "webm", "libopus", options={"live": "1"})  # like a browser recording
    with pytest.raises(InputError, match="more than 2.0 s long; the limit here is 2.0 s"):
        audio.decode(data, max_seconds=2.0)
