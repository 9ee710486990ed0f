"""The memory plan of one text-to-image call: working memory on top of the weights, VAE tiling when that makes
it fit, and the warning for a model larger than the whole memory budget."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from core import registry
from core.catalog import get_spec
from core.config import get_settings
from core.errors import ModelTooLarge
from core.imagegen.common import MAX_SIZE, MIN_SIZE

VAE_TILE_PX = 256


def budget_note(key: str) -> str:
    """A warning for people when a model not loaded yet is larger than the whole memory budget, else ""."""
    spec, budget = get_spec(key), get_settings().memory_budget_mb
    if spec.ram_mb <= budget or any(loaded.spec.key == key for loaded in registry.CACHE.snapshot()):
        return ""
    return (f"{spec.title} needs about {spec.ram_mb:,} MB in float32, more than the {budget:,} MB model budget here, "
            "so it will be refused. Raise UBT_MEMORY_BUDGET_MB if the machine has the memory.")


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


def plan_memory(model, vae, width: int, height: int, guided: bool, weights_mb: float,
                budget_mb: float) -> MemoryPlan:
    """Estimate the working memory of one image and turn on VAE tiling when that makes it fit.

    Args:
        model: the loaded pipeline (a :class:`~core.imagegen.text_to_image.TextToImage`).
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
def vae_tiles(vae, on: bool):
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
