"""The bf16 probe of each model family: a fixed input from the project's shipped samples, and the family's agreement
measure (see :data:`core.precision.TOLERANCES`). Loaders hand one to :func:`core.precision.apply`.

| family | probe input (timed) | agreement |
|---|---|---|
| CLIP | the shipped astronaut photo and 4 prompts | lowest cosine of image and text embeddings |
| text encoder | 16 shipped sentiment texts | lowest cosine over all shipped texts |
| classifier | 16 shipped sentiment texts | share of all shipped texts keeping their label |
| BLIP | the shipped astronaut photo, greedy, 20 tokens | word error of the caption against float32's |
| openai-whisper | the shipped clip, greedy | WER change against the shipped transcript |
| diffusion | one seeded step at 128x128 (the VAE decodes it) | mean pixel difference on 0-255 |
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from core.catalog import ASSETS
from core.precision import Probe, to_bf16

PROBE_IMAGE = ASSETS / "images" / "astronaut.jpg"
PROBE_PROMPTS = ("a photo of an astronaut.", "a photo of a cat.", "a photo of a flower.", "a photo of a rocket.")
PROBE_CLIP = ASSETS / "audio" / "sample.flac"
PROBE_TRANSCRIPT = ASSETS / "audio" / "sample.txt"
TIMED_TEXTS = 16
AGREEMENT_BATCH = 32


@functools.cache
def shipped_texts() -> tuple[str, ...]:
    """The texts of assets/sentiment.csv, in order."""
    import csv

    with open(ASSETS / "sentiment.csv", newline="", encoding="utf-8") as handle:
        return tuple(row["text"] for row in csv.DictReader(handle))


def probe_image():
    """The shipped probe photo (RGB)."""
    from PIL import Image

    with Image.open(PROBE_IMAGE) as image:
        return image.convert("RGB")


def lowest_cosine(a, b) -> float:
    """Lowest cosine similarity between matching rows of two tensors or arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return float((a * b).sum(axis=-1).min())


def _dtype(module) -> Any:
    return next(module.parameters()).dtype


# --- CLIP (open_clip) ----------------------------------------------------------------------------------
def clip_probe(preprocess, tokenizer) -> Probe:
    """Both towers of an open_clip model on the shipped photo and four prompts."""
    pixels = preprocess(probe_image()).unsqueeze(0)
    tokens = tokenizer(list(PROBE_PROMPTS))

    def run(model):
        image = model.encode_image(pixels.to(_dtype(model)), normalize=True)
        return image.float().numpy(), model.encode_text(tokens, normalize=True).float().numpy()

    def agreement(fp32, bf16) -> float:
        (image32, text32), (image16, text16) = run(fp32), run(bf16)
        return min(lowest_cosine(image32, image16), lowest_cosine(text32, text16))

    return Probe("clip", run, agreement)


# --- text: sentence encoders and classifiers (transformers) -------------------------------------------
def _batches(texts, size: int):
    return [list(texts[s : s + size]) for s in range(0, len(texts), size)]


def _pooled(tokenizer, max_length: int, model, texts: list[str]) -> np.ndarray:
    import torch

    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), dim=-1).numpy()


def text_encoder_probe(tokenizer, max_length: int) -> Probe:
    """A sentence encoder: mean-pooled embeddings of the shipped texts."""
    texts = shipped_texts()

    def run(model):
        return _pooled(tokenizer, max_length, model, list(texts[:TIMED_TEXTS]))

    def agreement(fp32, bf16) -> float:
        return min(lowest_cosine(_pooled(tokenizer, max_length, fp32, chunk), _pooled(tokenizer, max_length, bf16, chunk))
                   for chunk in _batches(texts, AGREEMENT_BATCH))

    return Probe("text-encoder", run, agreement)


def _labels(tokenizer, max_length: int, model, texts: list[str]) -> np.ndarray:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return model(**batch).logits.float().argmax(-1).numpy()


def classifier_probe(tokenizer, max_length: int) -> Probe:
    """A sequence classifier: its labels on every shipped text must stay the same."""
    texts = shipped_texts()

    def run(model):
        return _labels(tokenizer, max_length, model, list(texts[:TIMED_TEXTS]))

    def agreement(fp32, bf16) -> float:
        same = [(_labels(tokenizer, max_length, fp32, c) == _labels(tokenizer, max_length, bf16, c)) for c in _batches(texts, AGREEMENT_BATCH)]
        return float(np.concatenate(same).mean())

    return Probe("classifier", run, agreement)


# --- BLIP captioning ------------------------------------------------------------------------------------
def captioner_probe(processor, max_new_tokens: int = 20) -> Probe:
    """BLIP: a greedy caption of the shipped photo."""
    from core.wer import word_error_rate

    inputs = processor(images=[probe_image()], return_tensors="pt")

    def run(model) -> str:
        pixels = inputs["pixel_values"].to(_dtype(model))
        output = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
        return processor.batch_decode(output, skip_special_tokens=True)[0]

    def agreement(fp32, bf16) -> float:
        return word_error_rate(run(fp32), run(bf16))

    return Probe("captioner", run, agreement, repeats=2)


# --- openai-whisper -------------------------------------------------------------------------------------
def whisper_to_bf16(model):
    """Cast an openai-whisper model to bf16 so that it computes in bf16 behind ``whisper.transcribe(fp16=False)``.

    whisper's Linear and Conv1d cast their weights to the input's dtype and its LayerNorm computes in float32:
    the weights go to bf16 (the casts become no-ops), LayerNorm weights stay float32, the encoder reads its mel
    as bf16 and hands float32 features back (the decoding checks they are float32), and the decoder reads those
    features as bf16, so its activations are bf16 too. Logits come back as float32 (whisper's own ``.float()``).
    """
    import torch
    import whisper.model as wm

    to_bf16(model)
    for module in model.modules():
        if isinstance(module, wm.LayerNorm):
            module.float()

    def encoder_in(_module, args):
        return (args[0].to(torch.bfloat16),) + tuple(args[1:])

    def encoder_out(_module, _args, output):
        return output.float()

    def decoder_in(_module, args):
        return (args[0], args[1].to(torch.bfloat16)) + tuple(args[2:])

    model.encoder.register_forward_pre_hook(encoder_in)
    model.encoder.register_forward_hook(encoder_out)
    model.decoder.register_forward_pre_hook(decoder_in)
    return model


def whisper_probe(seconds: float = 30.0) -> Probe:
    """openai-whisper: greedy transcripts of the shipped clip (its first ``seconds``), scored against its text."""
    import whisper

    from core.audio import decode
    from core.wer import word_error_rate

    samples = decode(PROBE_CLIP.read_bytes(), PROBE_CLIP.name).samples[: int(seconds * 16000)]
    truth = PROBE_TRANSCRIPT.read_text(encoding="utf-8")

    def run(model) -> str:
        found = whisper.transcribe(model, samples, verbose=None, language="en", temperature=0.0,
                                   condition_on_previous_text=False, fp16=False)
        return found["text"]

    def agreement(fp32, bf16) -> float:
        reference = words_in(truth, run(fp32))
        return word_error_rate(reference, run(bf16)) - word_error_rate(reference, run(fp32))

    return Probe("whisper", run, agreement, cast=whisper_to_bf16, repeats=2)


def settle_whisper(key: str, model, location: str | None):
    """Decide an openai-whisper model's number format here and cast it when bf16 wins (see :func:`whisper_to_bf16`)."""
    from core.device import choose_device
    from core.precision import apply

    return apply(key, model, whisper_probe, location, choose_device().device)


def words_in(truth: str, transcript: str) -> str:
    """The part of ``truth`` that a transcript of the clip's first window covers (as many words as it has, +10%)."""
    count = len(transcript.split())
    return " ".join(truth.split()[: max(1, int(count * 1.1))])


# --- diffusion ------------------------------------------------------------------------------------------
def diffusion_probe(prompt: str = "a photo of an astronaut riding a horse", size: int = 128) -> Probe:
    """A diffusers pipeline: one seeded step at ``size`` pixels, decoded by its VAE."""
    import torch

    def run(pipe) -> np.ndarray:
        generator = torch.Generator().manual_seed(0)
        images = pipe(prompt, num_inference_steps=1, guidance_scale=0.0, width=size, height=size, generator=generator,
                      output_type="np").images
        return np.asarray(images, dtype=np.float32)

    def agreement(fp32, bf16) -> float:
        return float(np.abs(run(fp32) - run(bf16)).mean() * 255.0)

    return Probe("diffusion", run, agreement, cast=lambda pipe: pipe.to(dtype=torch.bfloat16), repeats=2)


def decoder_probe(latent_channels: int, size: int = 16) -> Probe:
    """A tiny decoder (TAESD): seeded latents decoded to pixels."""
    import torch

    latents = torch.randn(1, latent_channels, size, size, generator=torch.Generator().manual_seed(0))

    def run(vae) -> np.ndarray:
        return vae.decode(latents.to(_dtype(vae))).sample.float().clamp(-1, 1).numpy()

    def agreement(fp32, bf16) -> float:
        return float(np.abs(run(fp32) - run(bf16)).mean() * 127.5)

    return Probe("diffusion", run, agreement)
