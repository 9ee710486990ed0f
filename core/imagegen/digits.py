"""The project's own digits generator: a class-conditional UNet trained on scikit-learn's digits, sampled with
DDIM and classifier-free guidance, reporting every step (with a preview) through ``on_progress``."""
from __future__ import annotations

import functools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import registry
from core.catalog import ASSETS, ModelSpec, get_spec
from core.device import choose_device
from core.errors import InputError
from core.imagegen.common import MAX_SEED, Previews, png_bytes
from core.measure import Measurement, measured
from core.progress import OnProgress, Progress, ShouldStop
from core.registry import Resolution

DIGITS_KEY = "digits-diffusion"
DIGITS_SIZE = 16
TRAINING_RECORD = "training.json"  # in the bundled folder, next to unet/ and scheduler/
NULL_CLASS = 10  # the digits model's "no class" label, used for classifier-free guidance
MAX_DIGIT_STEPS = 200
MAX_DIGIT_IMAGES = 64


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
                  on_step: Callable[[int, Any], None] | None = None, should_stop: ShouldStop | None = None):
    """Denoise a batch of digits with DDIM (eta 0) and classifier-free guidance.

    Args:
        unet: the class-conditional UNet2DModel.
        scheduler: a DDIMScheduler (its timesteps are set here).
        labels: long tensor of digit classes, one per image.
        steps: DDIM steps.
        guidance: ``uncond + guidance * (cond - uncond)``; 1 means conditional only (one UNet pass per step).
        generator: torch.Generator for the starting noise.
        on_step: called as ``on_step(steps_done, predicted_clean_images)``.
        should_stop: polled after each step; True stops early.

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
        if should_stop is not None and done < steps and should_stop():
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


def generate_digits(loaded: registry.Loaded, digit: int, count: int = 8, steps: int = 20, guidance: float = 2.0,
                    seed: int = 0, on_progress: OnProgress | None = None,
                    should_stop: ShouldStop | None = None) -> DigitsResult:
    """Draw handwritten-style digits of one class with the project's own diffusion model (works offline).

    Args:
        loaded: the digits model from the registry (``DIGITS_KEY``).
        digit: the class, 0-9.
        count: images, bounded to 1-MAX_DIGIT_IMAGES.
        steps: DDIM steps, bounded to 1-MAX_DIGIT_STEPS.
        guidance: classifier-free guidance scale (1 = conditional only).
        seed: starting noise.
        on_progress: called after every step with a :class:`core.progress.Progress` whose preview (at most every
            PREVIEW_EVERY_S) is the predicted clean grid.
        should_stop: polled after every step; True stops early.

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
    model: DigitsGenerator = loaded.model
    previews = Previews(lambda clean: digits_grid(clean.float().cpu().numpy(), scale=4, smooth=False))

    def report(done: int, clean) -> None:
        preview = previews.update(clean, last=done == steps)
        if on_progress is not None:
            on_progress(Progress(done=done, total=steps, elapsed_s=time.perf_counter() - start, preview=preview))

    with model.lock, measured() as timing, torch.inference_mode():
        start = time.perf_counter()
        images, done = sample_digits(
            model.unet, model.scheduler, torch.full((count,), int(digit), dtype=torch.long), steps, float(guidance),
            torch.Generator("cpu").manual_seed(int(seed)), report, should_stop,
        )
    cancelled = done < steps
    array = images.float().cpu().numpy()
    parameters = {"model": loaded.spec.key, "digit": int(digit), "images": count, "steps": steps, "guidance_scale": float(guidance),
                  "seed": int(seed), "scheduler": type(model.scheduler).__name__, "size": model.unet.config.sample_size}
    measurement = loaded.measurement(timing.seconds, timing.peak_mb, step_s=timing.seconds / max(done, 1),
                               image_s=timing.seconds / count)
    pixels = None if cancelled else (array[:, 0] + 1) / 2
    # nearest-neighbour enlargement: each of the 16x16 pixels stays a sharp square
    return DigitsResult(
        None if cancelled else digits_grid(array, smooth=False), pixels, previews.latest,
        parameters, done, cancelled, notes, measurement, None if cancelled else readable_share(pixels, int(digit)),
    )
