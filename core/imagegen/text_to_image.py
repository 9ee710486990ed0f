"""Text-to-image with diffusers pipelines: validate the request -> denoise under ``torch.inference_mode()``,
reporting every step (with a small preview) through ``on_progress`` and stopping when ``should_stop`` says so ->
decode and postprocess into a result that carries its Measurement.

Loaded pipelines live in the shared model cache and are used by every session, so one call at a
time runs on each of them (a lock per model): diffusers pipelines and schedulers keep per-call state.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core import registry
from core.catalog import ModelSpec
from core.config import get_settings
from core.device import choose_device
from core.errors import InputError
from core.imagegen import memory
from core.imagegen.common import MAX_SEED, MAX_SIZE, MIN_SIZE, SIZE_MULTIPLE, ImageResult, Previews, latents_preview
from core.measure import measured
from core.precision import Decision, apply
from core.progress import OnProgress, Progress, ShouldStop
from core.registry import Resolution

MAX_STEPS = 50
TINY_DECODER_KEY = "taesd"


# --- text-to-image: loaders (called by the registry) ----------------------------------------------
@dataclass
class TextToImage:
    """A diffusers text-to-image pipeline and how its model wants to be driven.

    Attributes:
        pipe: e.g. a StableDiffusionPipeline.
        default_steps: steps the model was made for.
        default_guidance: classifier-free guidance scale the model was made for; 0 when it was
            distilled to work without guidance (turbo-style models), so it ignores negative prompts.
        lock: one generation at a time on this pipeline.
        precision: its number format (UNet, VAE and text encoder alike; see core/precision.py).
    """

    pipe: Any
    default_steps: int = 1
    default_guidance: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    precision: Decision = field(default_factory=Decision, compare=False)

    @property
    def uses_guidance(self) -> bool:
        """Whether the model reads a guidance scale and a negative prompt."""
        return self.default_guidance > 1.0

    @property
    def has_tiny_decoder(self) -> bool:
        """Whether the pipeline's own VAE already is a tiny (TAESD-style) decoder."""
        return type(self.pipe.vae).__name__ == "AutoencoderTiny"


@dataclass
class TinyDecoder:
    """A TAESD-style AutoencoderTiny that decodes Stable Diffusion latents much faster than the full VAE."""

    vae: Any
    precision: Decision = field(default_factory=Decision)


def load_text_to_image(spec: ModelSpec, resolution: Resolution) -> TextToImage:
    """Load the diffusers pipeline class named in ``spec.options["pipeline"]`` onto the chosen device."""
    import diffusers

    from core.precision_probes import diffusion_probe

    choice = choose_device()
    pipeline_class = getattr(diffusers, spec.options.get("pipeline", "DiffusionPipeline"))
    pipe = pipeline_class.from_pretrained(
        resolution.location, dtype=choice.dtype, local_files_only=resolution.local_files_only,
    ).to(choice.device)
    pipe.set_progress_bar_config(disable=True)
    precision = apply(spec.key, pipe, diffusion_probe, resolution.location, choice.device)
    return TextToImage(pipe, int(spec.options.get("steps", 1)), float(spec.options.get("guidance", 0.0)), precision=precision)


def load_tiny_decoder(spec: ModelSpec, resolution: Resolution) -> TinyDecoder:
    """Load TAESD (``AutoencoderTiny``) onto the chosen device."""
    from diffusers import AutoencoderTiny

    from core.precision_probes import decoder_probe

    choice = choose_device()
    vae = AutoencoderTiny.from_pretrained(
        resolution.location, dtype=choice.dtype, local_files_only=resolution.local_files_only,
    )
    vae = vae.to(choice.device).eval()
    probe = lambda: decoder_probe(int(vae.config.latent_channels))  # noqa: E731
    return TinyDecoder(vae, apply(spec.key, vae, probe, resolution.location, choice.device))


# --- text-to-image: the request ---------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRequest:
    """What to generate.

    Attributes:
        prompt: what the image should show.
        negative_prompt: what it should not show (models that use guidance only).
        steps: denoising steps.
        guidance_scale: classifier-free guidance; ignored by models made without guidance.
        width, height: pixels, 256-512, multiples of 8.
        seed: the same seed and settings give the same image.
        tiny_decoder: decode with TAESD instead of the model's full VAE.
    """

    prompt: str
    negative_prompt: str = ""
    steps: int = 1
    guidance_scale: float = 0.0
    width: int = 512
    height: int = 512
    seed: int = 0
    tiny_decoder: bool = False


def _check_side(name: str, value: int) -> None:
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise InputError(f"{name} must be between {MIN_SIZE} and {MAX_SIZE} pixels; {value} was asked for.")
    if value % SIZE_MULTIPLE:
        low = value - value % SIZE_MULTIPLE
        raise InputError(
            f"{name} {value} is not a multiple of {SIZE_MULTIPLE}: the decoder works in {SIZE_MULTIPLE}×{SIZE_MULTIPLE} "
            f"pixel blocks. Use {max(low, MIN_SIZE)} or {min(low + SIZE_MULTIPLE, MAX_SIZE)}."
        )


def validate_request(request: ImageRequest) -> tuple[ImageRequest, list[str]]:
    """Check a request before any model is loaded.

    Returns:
        The request with the prompt stripped and the steps bounded to 1-MAX_STEPS, and notes on what changed.

    Raises:
        InputError: empty prompt, size out of range or not a multiple of 8, bad seed.
    """
    notes: list[str] = []
    prompt = (request.prompt or "").replace("\x00", "").strip()
    if not prompt:
        raise InputError("There is no prompt: describe the image you want first (e.g. “a red fox in the snow”).")
    _check_side("Width", int(request.width))
    _check_side("Height", int(request.height))
    if not 0 <= int(request.seed) <= MAX_SEED:
        raise InputError(f"The seed must be a whole number from 0 to {MAX_SEED:,}.")
    steps = min(max(int(request.steps), 1), MAX_STEPS)
    if steps != request.steps:
        notes.append(f"{request.steps} steps is outside 1-{MAX_STEPS}; using {steps}.")
    negative = (request.negative_prompt or "").replace("\x00", "").strip()
    return replace(request, prompt=prompt, negative_prompt=negative, steps=steps), notes


def truncate_to_tokens(tokenizer, text: str, label: str) -> tuple[str, list[str]]:
    """Cut text to what the tokenizer's model reads (e.g. CLIP's 77 tokens), at a token boundary.

    Args:
        tokenizer: a fast tokenizer with ``model_max_length`` and offset mapping.
        text: the prompt.
        label: how to name it in the note (``prompt``, ``negative prompt``).

    Returns:
        The text (shortened when needed) and a note when it was shortened.
    """
    if not text:
        return text, []
    limit = tokenizer.model_max_length - 2  # start and end tokens
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= limit:
        return text, []
    end = encoded["offset_mapping"][limit - 1][1]
    note = (
        f"The {label} has {len(encoded['input_ids']):,} tokens ({len(text):,} characters); the text encoder reads "
        f"at most {limit}, so only its first {end:,} characters are used."
    )
    return text[:end].rstrip(), [note]


# --- text-to-image: generation -----------------------------------------------------------------------
def generate_image(loaded: registry.Loaded, request: ImageRequest, on_progress: OnProgress | None = None,
                   should_stop: ShouldStop | None = None, decoder: registry.Loaded | None = None) -> ImageResult:
    """Generate one image from a prompt with a loaded text-to-image model.

    Args:
        loaded: a text-to-image model from the registry (:class:`TextToImage`).
        request: prompt and settings (validated here).
        on_progress: called after every denoising step with a :class:`core.progress.Progress` (``done`` steps of
            ``total``, ``elapsed_s`` since denoising began, a ``preview`` at most every PREVIEW_EVERY_S).
        should_stop: polled after every step; True stops the run before the next step.
        decoder: the tiny decoder (``TINY_DECODER_KEY``) to decode with when ``request.tiny_decoder`` asks for it
            and the model has none of its own (:func:`needs_tiny_decoder`).

    Returns:
        ImageResult; ``image`` is None when cancelled.

    Raises:
        InputError: bad request. ModelUnavailable / ModelTooLarge: see core.registry and memory.plan_memory.
    """
    import torch

    request, notes = validate_request(request)
    model: TextToImage = loaded.model
    pipe = model.pipe
    vae, decoder_name, weights_mb, load_s = pipe.vae, type(pipe.vae).__name__, loaded.size_mb, loaded.load_s
    if request.tiny_decoder and model.has_tiny_decoder:
        notes.append("This model already decodes with a tiny (TAESD-style) decoder.")
    elif request.tiny_decoder:
        if decoder is None:
            raise InputError("The tiny decoder was asked for but not loaded: load it with the model.")
        vae, decoder_name, weights_mb = decoder.model.vae, decoder.spec.title, weights_mb + decoder.size_mb
        load_s = (load_s or 0.0) + (decoder.load_s or 0.0) or None
    prompt, prompt_notes = truncate_to_tokens(pipe.tokenizer, request.prompt, "prompt")
    guidance = float(request.guidance_scale) if model.uses_guidance else 0.0
    negative = request.negative_prompt if model.uses_guidance else ""
    if request.negative_prompt and not model.uses_guidance:
        notes.append("This model was made to work without guidance, so it ignores the negative prompt.")
    negative, negative_notes = truncate_to_tokens(pipe.tokenizer, negative, "negative prompt")
    request = replace(request, prompt=prompt, negative_prompt=negative, guidance_scale=guidance)
    notes += prompt_notes + negative_notes
    guided = guidance > 1.0
    plan = memory.plan_memory(model, vae, request.width, request.height, guided, weights_mb,
                              get_settings().memory_budget_mb)
    notes += list(plan.notes)

    device = pipe.device
    step_ends: list[float] = []
    previews, cancelled = Previews(latents_preview), [False]

    def step_end(pipeline, i, t, tensors):
        step_ends.append(time.perf_counter())
        preview = previews.update(tensors["latents"], last=i + 1 == request.steps)
        if on_progress is not None:
            on_progress(Progress(done=i + 1, total=request.steps, elapsed_s=step_ends[-1] - denoise_start,
                                 preview=preview))
        if should_stop is not None and should_stop() and i + 1 < request.steps:
            cancelled[0] = pipeline._interrupt = True
        return {}

    image, decode_s = None, 0.0
    with model.lock, measured() as timing, torch.inference_mode():
        prompt_embeds, negative_embeds = pipe.encode_prompt(request.prompt, device, 1, guided, negative or None)
        denoise_start = time.perf_counter()
        latents = pipe(
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds,
            num_inference_steps=request.steps, guidance_scale=guidance, width=request.width, height=request.height,
            generator=torch.Generator("cpu").manual_seed(request.seed), output_type="latent",
            callback_on_step_end=step_end,
        ).images
        if not cancelled[0]:
            decode_start = time.perf_counter()
            with memory.vae_tiles(vae, plan.vae_tiling):
                pixels = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
            pixels, nsfw = pipe.run_safety_checker(pixels, device, prompt_embeds.dtype)
            denormalize = [True] if nsfw is None else [not flagged for flagged in nsfw]
            image = pipe.image_processor.postprocess(pixels, output_type="pil", do_denormalize=denormalize)[0]
            decode_s = time.perf_counter() - decode_start
            if nsfw and nsfw[0]:
                notes.append("The model's safety checker flagged this image, so it is blanked.")
    starts = [denoise_start] + step_ends[:-1]
    step_s = float(np.mean([end - start for start, end in zip(starts, step_ends)])) if step_ends else 0.0
    parameters = {
        "model": loaded.spec.hub_id or loaded.spec.key, "pipeline": type(pipe).__name__,
        "scheduler": type(pipe.scheduler).__name__, "decoder": decoder_name, "prompt": request.prompt,
        "negative_prompt": request.negative_prompt, "steps": request.steps, "guidance_scale": guidance,
        "width": request.width, "height": request.height, "seed": request.seed,
    }
    measurement = loaded.measurement(timing.seconds, timing.peak_mb, load_s, step_s=step_s, decode_s=decode_s, image_s=timing.seconds)
    return ImageResult(image, parameters, notes, measurement, request=request, preview=previews.latest,
                       steps_done=len(step_ends), cancelled=cancelled[0])


def needs_tiny_decoder(loaded: registry.Loaded, request: ImageRequest) -> bool:
    """Whether :func:`generate_image` needs the tiny decoder handed in for this request."""
    return request.tiny_decoder and not loaded.model.has_tiny_decoder
