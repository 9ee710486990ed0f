"""Image generation: text-to-image with diffusers pipelines, and the project's own digits generator.

Both follow the family shape: validate the request -> denoise under ``torch.inference_mode()``,
reporting every step (with a small preview) as a :class:`core.progress.Progress` through ``on_progress``,
and stopping when ``should_stop`` says so -> decode and postprocess into a result that carries its Measurement.

Loaded pipelines live in the shared model cache and are used by every session, so one call at a
time runs on each of them (a lock per model): diffusers pipelines and schedulers keep per-call state.

Modules: :mod:`~core.imagegen.text_to_image` (requests, loaders, :func:`generate_image`),
:mod:`~core.imagegen.memory` (the memory plan, :func:`budget_note`), :mod:`~core.imagegen.digits` (the digits
model) and :mod:`~core.imagegen.common` (limits, step previews, PNG output). Their public names are re-exported
here; stand-ins are set on the module that reads them (``imagegen.memory.plan_memory``), not on this package.
"""
from __future__ import annotations

from core.imagegen.common import (LATENT_RGB_FACTORS, MAX_SEED, MAX_SIZE, MIN_SIZE, PREVIEW_EVERY_S, SIZE_MULTIPLE,
                                  ImageResult, Previews, latents_preview, png_bytes)
from core.imagegen.memory import VAE_TILE_PX, WORKING_OVERHEAD_MB, MemoryPlan, budget_note, plan_memory, vae_tiles
from core.imagegen.text_to_image import (MAX_STEPS, TINY_DECODER_KEY, ImageRequest, TextToImage, TinyDecoder,
                                         generate_image, load_text_to_image, load_tiny_decoder, needs_tiny_decoder,
                                         truncate_to_tokens, validate_request)
from core.imagegen.digits import (DIGITS_KEY, DIGITS_SIZE, MAX_DIGIT_IMAGES, MAX_DIGIT_STEPS, NULL_CLASS,
                                  TRAINING_RECORD, DigitsGenerator, DigitsResult, digits_grid, digits_to_8x8,
                                  digits_training_record, generate_digits, load_digits_generator, readable_share,
                                  sample_digits)

__all__ = [
    "LATENT_RGB_FACTORS", "MAX_SEED", "MAX_SIZE", "MIN_SIZE", "PREVIEW_EVERY_S", "SIZE_MULTIPLE", "ImageResult",
    "Previews", "latents_preview", "png_bytes",
    "VAE_TILE_PX", "WORKING_OVERHEAD_MB", "MemoryPlan", "budget_note", "plan_memory", "vae_tiles",
    "MAX_STEPS", "TINY_DECODER_KEY", "ImageRequest", "TextToImage", "TinyDecoder", "generate_image",
    "load_text_to_image", "load_tiny_decoder", "needs_tiny_decoder", "truncate_to_tokens", "validate_request",
    "DIGITS_KEY", "DIGITS_SIZE", "MAX_DIGIT_IMAGES", "MAX_DIGIT_STEPS", "NULL_CLASS", "TRAINING_RECORD",
    "DigitsGenerator", "DigitsResult", "digits_grid", "digits_to_8x8", "digits_training_record", "generate_digits",
    "load_digits_generator", "readable_share", "sample_digits",
]
