"""What both image generators share: the request limits, step previews (and the cheap picture of Stable
Diffusion latents they show) and PNG output with the parameters."""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from core.measure import Measurement

MIN_SIZE, MAX_SIZE, SIZE_MULTIPLE = 256, 512, 8
MAX_SEED = 2**32 - 1
PREVIEW_EVERY_S = 0.25

# Linear map from Stable Diffusion 1.x/2.x latents (4 channels, as the pipeline holds them) to RGB in
# [-1, 1]: a cheap approximation of the VAE decoder, good enough for a step preview.
LATENT_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)


class Previews:
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
    """A generated image, made here or by a hosted endpoint, what made it, and the measurement.

    Attributes:
        image: the PIL image, or None when the run was cancelled.
        parameters: everything needed to reproduce it (written into the PNG): model, prompt, size, seed ...
        notes: what was changed or turned on, for people.
        measurement: load time, latency, peak memory, s/step and decode seconds here; images/s and cost hosted.
        request: the request as actually run here (prompts truncated, steps bounded, guidance as used).
        preview: the last step preview drawn here.
        steps_done: denoising steps completed here.
        cancelled: True when the run stopped early on request.
        data, mime: the bytes a hosted endpoint sent and their media type ("" for an image made here).
    """

    image: Any
    parameters: dict
    notes: list[str]
    measurement: Measurement
    request: Any = None
    preview: Any = None
    steps_done: int = 0
    cancelled: bool = False
    data: bytes = b""
    mime: str = ""

    def png(self) -> bytes:
        """The image as PNG with its parameters in the text metadata."""
        return png_bytes(self.image, self.parameters)

    def download(self) -> tuple[bytes, str, str]:
        """What a download button offers: the bytes as sent by an endpoint, else the PNG; extension; MIME type."""
        if self.data:
            return self.data, self.mime.split("/")[-1].replace("jpeg", "jpg"), self.mime
        return self.png(), "png", "image/png"
