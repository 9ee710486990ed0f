"""Tiny seeded Whisper models built from dimensions: openai-whisper's own classes, scaled down.

The tokenizer is the real one (openai-whisper ships its tiktoken vocabularies), so ``n_vocab``
must match it: 51865 multilingual, 51864 English-only. The audio side keeps Whisper's 30 s
window (80 mel bins, 1500 positions); only widths, depths and the text context shrink.
"""
from __future__ import annotations

import numpy as np
import torch

from core.audio import SAMPLE_RATE

N_VOCAB = {True: 51865, False: 51864}
TINY_REAL = dict(n_audio_state=384, n_audio_head=6, n_audio_layer=4, n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4)


def whisper_model(multilingual: bool = True, seed: int = 0, **dims):
    """A random openai-whisper model wrapped for the registry (``core.speech.TorchWhisper``), on the chosen device.

    Args:
        multilingual: the multilingual vocabulary (language detection, translation) or English-only.
        seed: torch seed for the weights.
        dims: overrides of the tiny dimensions (``TINY_REAL`` gives Whisper tiny's real ones).
    """
    from whisper.model import ModelDimensions, Whisper

    from core.device import choose_device
    from core.speech import TorchWhisper

    config = dict(
        n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1, n_vocab=N_VOCAB[multilingual],
        n_text_ctx=32, n_text_state=16, n_text_head=2, n_text_layer=1,
    )
    config.update(dims)
    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**config))
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)  # created with torch.empty
    return TorchWhisper(model.to(choose_device().device).eval())  # where the real loader puts it


def tone(seconds: float, rate: int = SAMPLE_RATE, channels: int = 1, frequency: float = 440.0) -> np.ndarray:
    """A sine tone at 0.3 full scale; each channel a little higher than the last. Shape (n,) or (channels, n)."""
    t = np.arange(int(seconds * rate)) / rate
    waves = np.stack([0.3 * np.sin(2 * np.pi * (frequency + 55 * c) * t) for c in range(channels)]).astype(np.float32)
    return waves[0] if channels == 1 else waves


def long_speech(copies: int = 7, gap_s: float = 0.6):
    """Real speech longer than two Whisper windows: the shipped sample clip ``copies`` times, with
    ``gap_s`` of silence between copies (7 copies: 74.7 s). Returns (Audio, its known transcript)."""
    from core import audio, speech

    data, transcript = speech.sample_clip()
    sample = audio.decode(data, "sample.flac").samples
    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
    samples = np.concatenate([part for _ in range(copies) for part in (sample, gap)][:-1])
    return audio.Audio(samples, SAMPLE_RATE, 1, "flac"), " ".join([transcript] * copies)
