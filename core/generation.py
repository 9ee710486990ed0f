"""Image generation: text-to-image with diffusers pipelines, and the project's own digits generator.

Both follow the family shape: validate the request -> denoise under ``torch.inference_mode()``,
reporting every step (with a small preview) through a callback that may also cancel -> decode and
postprocess into a result that carries its Measurement.

Loaded pipelines live in the shared model cache and are used by every session, so one call at a
time runs on each of them (a lock per model): diffusers pipelines and schedulers keep per-call state.
"""
from __future__ import annotations

import functools
import io
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import registry
from core.catalog import ASSETS, ModelSpec, get_spec
from core.config import get_settings
from core.device import choose_device
from core.errors import InputError, ModelTooLarge
from core.measure import Measurement, measured
from core.registry import Resolution

MIN_SIZE, MAX_SIZE, SIZE_MULTIPLE = 256, 512, 8
MAX_STEPS = 50
MAX_SEED = 2**32 - 1
TINY_DECODER_KEY = "taesd"
DIGITS_KEY = "digits-diffusion"
DIGITS_SIZE = 16
TRAINING_RECORD = "training.json"  # in the bundled folder, next to unet/ and scheduler/
NULL_CLASS = 10  # the digits model's "no class" label, used for classifier-free guidance
MAX_DIGIT_STEPS = 200
MAX_DIGIT_IMAGES = 64
VAE_TILE_PX = 256

# Linear map from Stable Diffusion 1.x/2.x latents (4 channels, as the pipeline holds them) to RGB in
# [-1, 1]: a cheap approximation of the VAE decoder, good enough for a step preview.
LATENT_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)


@dataclass(frozen=True)
class StepUpdate:
    """What a step callback receives.

    Attributes:
        step: denoising steps done so far (1-based).
        total: steps requested.
        elapsed_s: seconds since denoising started.
        preview: a small approximate picture of the current state, or None when it was not redrawn
            this step (see PREVIEW_EVERY_S).
    """

    step: int
    total: int
    elapsed_s: float
    preview: Any = None


OnStep = Callable[[StepUpdate], None]
ShouldCancel = Callable[[], bool]
PREVIEW_EVERY_S = 0.25


class _Previews:
    """Step previews drawn at most every PREVIEW_EVERY_S, and always at the last step, so that fast
    models neither flood the page with images nor spend their steps drawing them."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self.draw, self.drawn_at, self.latest = draw, float("-inf"), None

    def update(self, state, last: bool):
        """The new preview of ``state``, or None when the previous one is recent enough."""
        now = time.perf_counter()
        if not last and now - self.drawn_at < PREVIEW_EVERY_S:
            return None
        self.latest, self.drawn_at = self.draw(state), now
        return self.latest


def png_bytes(image, parameters: dict) -> bytes:
    """Encode an image as PNG with the parameters that made it in its text metadata.

    Args:
        image: a PIL image.
        parameters: written one tEXt chunk per key, plus a ``parameters`` chunk with all of them as JSON.

    Returns:
        The PNG file's bytes.
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for name, value in parameters.items():
        info.add_text(str(name), str(value))
    info.add_text("parameters", json.dumps(parameters, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def budget_note(key: str) -> str:
    """A warning for people when a model not loaded yet is larger than the whole memory budget, else ""."""
    spec, budget = get_spec(key), get_settings().memory_budget_mb
    if spec.ram_mb <= budget or any(loaded.spec.key == key for loaded in registry.CACHE.snapshot()):
        return ""
    return (f"{spec.title} needs about {spec.ram_mb:,} MB in float32, more than the {budget:,} MB model budget here, "
            "so it will be refused. Raise UBT_MEMORY_BUDGET_MB if the machine has the memory.")


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
    """

    pipe: Any
    default_steps: int = 1
    default_guidance: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

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


def load_text_to_image(spec: ModelSpec, resolution: Resolution) -> TextToImage:
    """Load the diffusers pipeline class named in ``spec.options["pipeline"]`` onto the chosen device."""
    import diffusers

    choice = choose_device()
    pipeline_class = getattr(diffusers, spec.options.get("pipeline", "DiffusionPipeline"))
    pipe = pipeline_class.from_pretrained(
        resolution.location, dtype=choice.dtype, local_files_only=resolution.local_files_only,
    ).to(choice.device)
    pipe.set_progress_bar_config(disable=True)
    return TextToImage(pipe, int(spec.options.get("steps", 1)), float(spec.options.get("guidance", 0.0)))


def load_tiny_decoder(spec: ModelSpec, resolution: Resolution) -> TinyDecoder:
    """Load TAESD (``AutoencoderTiny``) onto the chosen device."""
    from diffusers import AutoencoderTiny

    choice = choose_device()
    vae = AutoencoderTiny.from_pretrained(
        resolution.location, dtype=choice.dtype, local_files_only=resolution.local_files_only,
    )
    return TinyDecoder(vae.to(choice.device).eval())


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


# --- text-to-image: memory plan -----------------------------------------------------------------
@dataclass(frozen=True)
class MemoryPlan:
    """Working memory one image needs on top of the weights, and the savings turned on to fit it.

    Attributes:
        working_mb: estimated activation memory of the largest stage (denoising or decoding).
        vae_tiling: decode in tiles of VAE_TILE_PX pixels.
        notes: what was turned on and why.
    """

    working_mb: float
    vae_tiling: bool = False
    notes: tuple[str, ...] = ()


WORKING_OVERHEAD_MB = 128  # fixed part of the measured peaks below (allocator and kernel workspaces)


def _unet_working_mb(unet_config, latent_h: int, latent_w: int, batch: int, bytes_per: int) -> float:
    """Skip connections the UNet keeps for its up path, plus eight maps of its largest feature size
    (a transformer block's feed-forward widens the channels eight times).

    Attention adds no (tokens x tokens) matrix: torch's scaled_dot_product_attention, which diffusers
    uses, does not build one on CPU either (which is why attention slicing would save nothing here).
    Calibrated with the SD 1.5 UNet config (random weights) on this machine, batch 2: measured
    +162 MB at 256 px and +273 MB at 512 px; this plus WORKING_OVERHEAD_MB gives 161 and 259.
    """
    channels = list(unet_config.block_out_channels)
    floats, largest, h, w = channels[0] * latent_h * latent_w, 0, latent_h, latent_w
    for i, c in enumerate(channels):
        floats += unet_config.layers_per_block * c * h * w
        largest = max(largest, c * h * w)
        if i < len(channels) - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
            floats += c * h * w
    return batch * bytes_per * (floats + 8 * largest) / 2**20


def _vae_working_mb(vae, height: int, width: int, bytes_per: int, tile_px: int | None) -> float:
    """The decoder's last stages at full resolution: 3.5 maps of its second-widest channel count.

    Calibrated with the SD VAE config (random weights) on this machine: measured +321 MB at 256 px,
    +977 MB at 512 px and +384 MB at 512 px in 256 px tiles; this plus WORKING_OVERHEAD_MB gives
    352, 1,024 and 358.
    """
    if type(vae).__name__ == "AutoencoderTiny":
        channels = max(vae.config.decoder_block_out_channels)
    else:
        blocks = list(vae.config.block_out_channels)
        channels = blocks[1] if len(blocks) > 1 else blocks[0]
    pixels = height * width if tile_px is None else min(tile_px, height) * min(tile_px, width)
    output = 0 if tile_px is None else 2 * 3 * height * width  # tiles are blended into full-size outputs
    return bytes_per * (3.5 * channels * pixels + output) / 2**20


def plan_memory(model: TextToImage, vae, width: int, height: int, guided: bool, weights_mb: float,
                budget_mb: float) -> MemoryPlan:
    """Estimate the working memory of one image and turn on VAE tiling when that makes it fit.

    Args:
        model: the loaded pipeline.
        vae: the decoder that will be used (the pipeline's or TAESD).
        width, height: image size in pixels.
        guided: classifier-free guidance doubles the UNet batch.
        weights_mb: memory of the loaded weights (already inside the budget).
        budget_mb: the memory budget.

    Returns:
        The MemoryPlan.

    Raises:
        ModelTooLarge: when the image cannot fit even with the savings, naming a size that fits.
    """
    import torch

    bytes_per = torch.finfo(model.pipe.unet.dtype).bits // 8
    scale = model.pipe.vae_scale_factor
    headroom = budget_mb - weights_mb

    def working(w: int, h: int, tile_px: int | None) -> float:
        unet = _unet_working_mb(model.pipe.unet.config, h // scale, w // scale, 2 if guided else 1, bytes_per)
        return WORKING_OVERHEAD_MB + max(unet, _vae_working_mb(vae, h, w, bytes_per, tile_px))

    can_tile = type(vae).__name__ == "AutoencoderKL"
    plain = working(width, height, None)
    if plain <= headroom:
        return MemoryPlan(plain)
    if can_tile:
        tiled = working(width, height, VAE_TILE_PX)
        if tiled <= headroom:
            return MemoryPlan(tiled, True, (
                f"{width}×{height} needs about {plain:,.0f} MB to decode in one piece; decoding in "
                f"{VAE_TILE_PX}-pixel tiles ({tiled:,.0f} MB) to stay inside the memory budget.",
            ))
    fits = [s for s in range(MAX_SIZE, MIN_SIZE - 1, -64) if working(s, s, VAE_TILE_PX if can_tile else None) <= headroom]
    hint = f"A {fits[0]}×{fits[0]} image fits." if fits else "No size from 256 px fits; pick a smaller model."
    raise ModelTooLarge(
        f"A {width}×{height} image needs about {working(width, height, VAE_TILE_PX if can_tile else None):,.0f} MB of "
        f"working memory on top of {weights_mb:,.0f} MB of weights, more than the {budget_mb:,.0f} MB memory budget "
        f"allows{' even when decoding in tiles' if can_tile else ''}. {hint} (UBT_MEMORY_BUDGET_MB raises the budget.)"
    )


@contextmanager
def _vae_tiles(vae, on: bool):
    """Decode in VAE_TILE_PX tiles inside the block, then restore the VAE (it is shared)."""
    if not on:
        yield
        return
    saved = (vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = True, VAE_TILE_PX, VAE_TILE_PX // factor
    try:
        yield
    finally:
        vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = saved


# --- text-to-image: generation -----------------------------------------------------------------------
def latents_preview(latents):
    """A cheap RGB picture of Stable Diffusion latents (linear approximation of the decoder).

    Args:
        latents: tensor (batch, 4, h, w); the first item is shown.

    Returns:
        A PIL image of h x w pixels, or None for latents that are not 4-channel.
    """
    import torch
    from PIL import Image

    if latents.shape[1] != len(LATENT_RGB_FACTORS):
        return None
    rgb = latents[0].float().cpu().permute(1, 2, 0) @ torch.tensor(LATENT_RGB_FACTORS)
    return Image.fromarray(rgb.add(1).mul(127.5).clamp(0, 255).to(torch.uint8).numpy())


@dataclass
class ImageResult:
    """A generated image (None when cancelled), what was used to make it, and the measurement.

    Attributes:
        image: the PIL image, or None when the run was cancelled.
        preview: the last step preview drawn.
        request: the request as actually run (prompts truncated, steps bounded, guidance as used).
        parameters: everything needed to reproduce it (also written into the PNG).
        steps_done: denoising steps completed.
        cancelled: True when the run stopped early on request.
        notes: what was changed or turned on, for people.
        measurement: load time, latency, peak memory, s/step, decode and per-image seconds.
    """

    image: Any
    preview: Any
    request: ImageRequest
    parameters: dict
    steps_done: int
    cancelled: bool
    notes: list[str]
    measurement: Measurement

    def png(self) -> bytes:
        """The image as PNG with its parameters in the text metadata."""
        return png_bytes(self.image, self.parameters)


def generate_image(key: str, request: ImageRequest, on_step: OnStep | None = None,
                   should_cancel: ShouldCancel | None = None) -> ImageResult:
    """Generate one image from a prompt with a text-to-image model from the catalog.

    Args:
        key: catalog key of a text-to-image spec.
        request: prompt and settings (validated here).
        on_step: called after every denoising step with a StepUpdate (a preview at most every PREVIEW_EVERY_S).
        should_cancel: polled after every step; True stops the run before the next step.

    Returns:
        ImageResult; ``image`` is None when cancelled.

    Raises:
        InputError: bad request. ModelUnavailable / ModelTooLarge: see core.registry and plan_memory.
    """
    import torch

    request, notes = validate_request(request)
    loaded = registry.load(key)
    model: TextToImage = loaded.model
    pipe = model.pipe
    vae, decoder_name, weights_mb, load_s = pipe.vae, type(pipe.vae).__name__, loaded.size_mb, loaded.load_s
    if request.tiny_decoder and model.has_tiny_decoder:
        notes.append("This model already decodes with a tiny (TAESD-style) decoder.")
    elif request.tiny_decoder:
        decoder = registry.load(TINY_DECODER_KEY)
        vae, decoder_name, weights_mb = decoder.model.vae, get_spec(TINY_DECODER_KEY).title, weights_mb + decoder.size_mb
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
    plan = plan_memory(model, vae, request.width, request.height, guided, weights_mb, get_settings().memory_budget_mb)
    notes += list(plan.notes)

    device = pipe.device
    step_ends: list[float] = []
    previews, cancelled = _Previews(latents_preview), [False]

    def step_end(pipeline, i, t, tensors):
        step_ends.append(time.perf_counter())
        preview = previews.update(tensors["latents"], last=i + 1 == request.steps)
        if on_step is not None:
            on_step(StepUpdate(i + 1, request.steps, step_ends[-1] - denoise_start, preview))
        if should_cancel is not None and should_cancel() and i + 1 < request.steps:
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
            with _vae_tiles(vae, plan.vae_tiling):
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
    return ImageResult(image, previews.latest, request, parameters, len(step_ends), cancelled[0], notes, measurement)


# --- the project's digits generator -------------------------------------------------------------
@dataclass
class DigitsGenerator:
    """A class-conditional UNet2DModel trained by this project on scikit-learn's digits, with its DDIM scheduler.

    Attributes:
        unet: diffusers UNet2DModel with ``num_class_embeds`` = 11 (digits 0-9 and NULL_CLASS).
        scheduler: DDIMScheduler sharing the training noise schedule.
        record: the training record (see :func:`digits_training_record`).
        lock: one sampling run at a time (the scheduler keeps per-call state).
    """

    unet: Any
    scheduler: Any
    record: dict
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def load_digits_generator(spec: ModelSpec, resolution: Resolution) -> DigitsGenerator:
    """Load the bundled digits model from assets/ (safetensors + JSON configs)."""
    from diffusers import DDIMScheduler, UNet2DModel

    folder = Path(resolution.location)
    unet = UNet2DModel.from_pretrained(folder / "unet", local_files_only=True).to(choose_device().device).eval()
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
    return DigitsGenerator(unet, scheduler, json.loads((folder / TRAINING_RECORD).read_text(encoding="utf-8")))


def digits_training_record(key: str = DIGITS_KEY) -> dict:
    """How the bundled digits generator was trained: seconds, steps, hardware, loss curve, sample accuracy.

    Returns:
        The record from assets/<bundled>/training.json, or {} when the asset is missing. Keys include
        ``train_seconds``, ``steps``, ``batch_size``, ``hardware``, ``threads``, ``parameters``,
        ``loss_curve`` (list of [step, loss]) and ``sample_accuracy``.
    """
    path = ASSETS / get_spec(key).bundled / TRAINING_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def sample_digits(unet, scheduler, labels, steps: int, guidance: float, generator,
                  on_step: Callable[[int, Any], None] | None = None, should_cancel: ShouldCancel | None = None):
    """Denoise a batch of digits with DDIM (eta 0) and classifier-free guidance.

    Args:
        unet: the class-conditional UNet2DModel.
        scheduler: a DDIMScheduler (its timesteps are set here).
        labels: long tensor of digit classes, one per image.
        steps: DDIM steps.
        guidance: ``uncond + guidance * (cond - uncond)``; 1 means conditional only (one UNet pass per step).
        generator: torch.Generator for the starting noise.
        on_step: called as ``on_step(steps_done, predicted_clean_images)``.
        should_cancel: polled after each step; True stops early.

    Returns:
        (images in [-1, 1] of shape (n, 1, s, s), steps done).
    """
    import torch

    size = unet.config.sample_size
    device = unet.device
    x = torch.randn((len(labels), unet.config.in_channels, size, size), generator=generator).to(device)
    x = x * scheduler.init_noise_sigma
    labels = labels.to(device)
    scheduler.set_timesteps(steps)
    done = 0
    for t in scheduler.timesteps:
        if guidance == 1.0:
            eps = unet(x, t, class_labels=labels).sample
        else:
            both = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, torch.full_like(labels, NULL_CLASS)])).sample
            cond, uncond = both.chunk(2)
            eps = uncond + guidance * (cond - uncond)
        out = scheduler.step(eps, t, x)
        x, done = out.prev_sample, done + 1
        if on_step is not None:
            on_step(done, out.pred_original_sample)
        if should_cancel is not None and done < steps and should_cancel():
            break
    return x.clamp(-1, 1), done


def digits_grid(images, scale: int = 8, columns: int = 8, smooth: bool = True):
    """Tile images in [-1, 1] of shape (n, 1, s, s) into one PIL image, enlarged ``scale`` times.

    Args:
        images: array or tensor of digits.
        scale: enlargement of the whole grid.
        columns: tiles per row.
        smooth: bicubic enlargement (for results); False is nearest-neighbour (cheap, for step previews).
    """
    from PIL import Image

    pixels = ((np.asarray(images, dtype=np.float32)[:, 0] + 1) * 127.5).clip(0, 255).astype(np.uint8)
    n, s = len(pixels), pixels.shape[-1]
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = np.full((rows * (s + 1) - 1, columns * (s + 1) - 1), 40, dtype=np.uint8)
    for i, tile in enumerate(pixels):
        top, left = (i // columns) * (s + 1), (i % columns) * (s + 1)
        grid[top : top + s, left : left + s] = tile
    resample = Image.Resampling.BICUBIC if smooth else Image.Resampling.NEAREST
    return Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), resample)


def digits_to_8x8(pixels: np.ndarray) -> np.ndarray:
    """(n, 16, 16) in [0, 1] -> (n, 64) on scikit-learn digits' 0-16 scale, by 2x2 average pooling."""
    n = len(pixels)
    return np.asarray(pixels).reshape(n, 8, 2, 8, 2).mean(axis=(2, 4)).reshape(n, 64) * 16


@functools.cache
def _digits_reader():
    """A logistic regression trained on scikit-learn's real 8x8 digits (about a second, once per process)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    data = load_digits()
    return LogisticRegression(max_iter=5000).fit(data.data, data.target)


def readable_share(pixels: np.ndarray, digit: int) -> float:
    """The share of generated digits (n, 16, 16) in [0, 1] that a classifier trained on the real digits reads as
    ``digit``: the generator's quality figure, as its training record measures it."""
    return float((_digits_reader().predict(digits_to_8x8(pixels)) == digit).mean())


@dataclass
class DigitsResult:
    """Generated digits (None when cancelled) and the measurement.

    Attributes:
        grid: all images tiled into one PIL image, or None when cancelled.
        pixels: array (n, s, s) in [0, 1], or None when cancelled.
        preview: the last drawn preview of the predicted clean images, tiled.
        parameters: everything needed to reproduce it (also written into the PNG).
        steps_done: DDIM steps completed.
        cancelled: True when the run stopped early on request.
        notes: what was changed, for people.
        measurement: load time, latency, peak memory, s/step, s/image.
        readable: share of the images a classifier trained on the real digits reads as the digit asked for
            (None when cancelled).
    """

    grid: Any
    pixels: Any
    preview: Any
    parameters: dict
    steps_done: int
    cancelled: bool
    notes: list[str]
    measurement: Measurement
    readable: float | None = None

    def png(self) -> bytes:
        """The grid as PNG with its parameters in the text metadata."""
        return png_bytes(self.grid, self.parameters)


def generate_digits(digit: int, count: int = 8, steps: int = 20, guidance: float = 2.0, seed: int = 0,
                    on_step: OnStep | None = None, should_cancel: ShouldCancel | None = None,
                    key: str = DIGITS_KEY) -> DigitsResult:
    """Draw handwritten-style digits of one class with the project's own diffusion model (works offline).

    Args:
        digit: the class, 0-9.
        count: images, bounded to 1-MAX_DIGIT_IMAGES.
        steps: DDIM steps, bounded to 1-MAX_DIGIT_STEPS.
        guidance: classifier-free guidance scale (1 = conditional only).
        seed: starting noise.
        on_step: called after every step with a StepUpdate whose preview (at most every PREVIEW_EVERY_S)
            is the predicted clean grid.
        should_cancel: polled after every step; True stops early.
        key: catalog key of the digits model.

    Returns:
        DigitsResult.

    Raises:
        InputError: when ``digit`` is not 0-9 or the seed is out of range.
    """
    import torch

    if int(digit) != digit or not 0 <= digit <= 9:
        raise InputError(f"The digits model draws the classes 0 to 9; {digit!r} is not one of them.")
    if not 0 <= int(seed) <= MAX_SEED:
        raise InputError(f"The seed must be a whole number from 0 to {MAX_SEED:,}.")
    notes = []
    bounded = {
        "images": (count, min(max(int(count), 1), MAX_DIGIT_IMAGES)),
        "steps": (steps, min(max(int(steps), 1), MAX_DIGIT_STEPS)),
    }
    for name, (asked, used) in bounded.items():
        if asked != used:
            notes.append(f"{asked} {name} is outside the allowed range; using {used}.")
    count, steps = bounded["images"][1], bounded["steps"][1]
    loaded = registry.load(key)
    model: DigitsGenerator = loaded.model
    previews = _Previews(lambda clean: digits_grid(clean.float().cpu().numpy(), scale=4, smooth=False))

    def report(done: int, clean) -> None:
        preview = previews.update(clean, last=done == steps)
        if on_step is not None:
            on_step(StepUpdate(done, steps, time.perf_counter() - start, preview))

    with model.lock, measured() as timing, torch.inference_mode():
        start = time.perf_counter()
        images, done = sample_digits(
            model.unet, model.scheduler, torch.full((count,), int(digit), dtype=torch.long), steps, float(guidance),
            torch.Generator("cpu").manual_seed(int(seed)), report, should_cancel,
        )
    cancelled = done < steps
    array = images.float().cpu().numpy()
    parameters = {"model": key, "digit": int(digit), "images": count, "steps": steps, "guidance_scale": float(guidance),
                  "seed": int(seed), "scheduler": type(model.scheduler).__name__, "size": model.unet.config.sample_size}
    measurement = loaded.measurement(timing.seconds, timing.peak_mb, step_s=timing.seconds / max(done, 1),
                               image_s=timing.seconds / count)
    pixels = None if cancelled else (array[:, 0] + 1) / 2
    # nearest-neighbour enlargement: each of the 16x16 pixels stays a sharp square
    return DigitsResult(
        None if cancelled else digits_grid(array, smooth=False), pixels, previews.latest,
        parameters, done, cancelled, notes, measurement, None if cancelled else readable_share(pixels, int(digit)),
    )
