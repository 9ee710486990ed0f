"""Safe image decoding for every page that takes pictures from people.

Whatever arrives (a phone photo with an EXIF rotation, a CMYK print file, a 16-bit scan, a PNG with
transparency, an animated GIF, a truncated upload, a file that is not an image at all), the result is
an upright 8-bit RGB image no larger than ``max_side`` on its longest side, or an
:class:`~core.errors.InputError` whose message says what is wrong. Size is checked from the header
before any pixel is decoded, so a decompression bomb costs nothing.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.catalog import ASSETS
from core.errors import InputError

MAX_IMAGES = 16
"""Most images used from one request; more are left out with a message."""
MAX_PIXELS = 64_000_000
"""Largest image (width x height) decoded: above this it is refused before decoding."""
MAX_ASPECT = 20.0
"""Most elongated image accepted (longest side / shortest side)."""
DEFAULT_MAX_SIDE = 1024
SAMPLES = ASSETS / "images"

_READABLE = "JPEG, PNG, GIF, WebP, BMP or TIFF"
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)
_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """An image ready for a model, and what was done to it on the way.

    Attributes:
        name: the file name it came from (for messages).
        image: upright 8-bit RGB, longest side at most the requested ``max_side``.
        original_size: (width, height) as stored in the file, before any rotation or downscaling.
        notes: one line per change made (first frame of an animation, downscaled, converted ...).
    """

    name: str
    image: Image.Image
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()


@dataclass
class ImageBatch:
    """Images decoded from several files, and one message per file that could not be used."""

    images: list[DecodedImage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _open(data: bytes, name: str) -> Image.Image:
    if not data:
        raise InputError(f"{name} is empty (0 bytes): there is nothing to read. Pick the file again, or another image.")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputError(f"{name} is not an image this app can read; use {_READABLE}.") from None
    except Image.DecompressionBombError:
        raise InputError(
            f"{name} declares more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:,.0f} megapixels (a 'decompression bomb'); "
            f"it was not decoded. The most this app decodes is {MAX_PIXELS / 1e6:.0f} megapixels."
        ) from None
    except _DAMAGED as err:
        raise InputError(f"{name} looks like an image but its header is damaged ({err}).") from None


def _check_size(img: Image.Image, name: str) -> None:
    width, height = img.size
    if width < 1 or height < 1:
        raise InputError(f"{name} has no pixels ({width}x{height}).")
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{name} is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels); the most this app "
            f"decodes is {MAX_PIXELS / 1e6:.0f} megapixels. Shrink it and try again."
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InputError(
            f"{name} is {width}x{height} pixels: too elongated (more than {MAX_ASPECT:.0f}:1) for these models, "
            "which look at a centred square. Crop it first."
        )


def _to_8bit(img: Image.Image) -> Image.Image:
    """Grey images with 16/32-bit integer or float pixels, scaled to 0..255."""
    values = np.asarray(img, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if img.mode.startswith("I;16") or (img.mode == "I" and 255 < high <= 65535 and low >= 0):
        values = values / 257.0
    elif img.mode == "F" and low >= 0 and high <= 1:
        values = values * 255.0
    elif low < 0 or high > 255:
        values = (values - low) / max(high - low, 1e-12) * 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _to_rgb(img: Image.Image, name: str, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode in _HIGH_BIT_MODES:
        notes.append(f"{name} has {'floating-point' if mode == 'F' else 'high bit-depth'} grey pixels ({mode}); scaled to 8-bit.")
        return _to_8bit(img).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            notes.append(f"{name} has transparent areas; they are shown on white.")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if mode == "CMYK":
        notes.append(f"{name} is a CMYK (print) image; converted to RGB.")
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError:
        raise InputError(f"{name} uses the colour mode {mode}, which cannot be converted to RGB here.") from None


def decode(data: bytes, name: str = "image", max_side: int = DEFAULT_MAX_SIDE) -> DecodedImage:
    """Decode one image file safely.

    Args:
        data: the file's bytes.
        name: its name, used in messages.
        max_side: the longest side of the result, in pixels; larger images are downscaled (JPEGs
            are decoded at a reduced scale directly, so a 4000x3000 photo costs little).

    Returns:
        A DecodedImage: upright 8-bit RGB, first frame of an animation, alpha composited on white.

    Raises:
        InputError: for 0 bytes, not an image, a damaged or truncated file, an image above
            MAX_PIXELS (checked before decoding) or more elongated than MAX_ASPECT.
    """
    with warnings.catch_warnings():
        # PIL only warns between 89 and 179 megapixels; MAX_PIXELS refuses those sizes anyway.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = _open(data, name)
        _check_size(img, name)
        original_size = img.size
        notes: list[str] = []
        try:
            frames = getattr(img, "n_frames", 1)  # a TIFF walks its frame directory here
            if frames > 1:
                img.seek(0)
                notes.append(f"{name} is animated ({frames} frames); only the first frame is used.")
            if img.format == "JPEG":
                img.draft(None, (max_side, max_side))
            img.load()
        except _DAMAGED as err:
            reason = "cut off (truncated)" if "truncated" in str(err) else f"damaged ({err})"
            raise InputError(f"{name} is {reason}; upload the complete file again.") from None
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except _DAMAGED:
        orientation = 1
    if orientation in range(2, 9):
        try:
            img = ImageOps.exif_transpose(img)
            notes.append(f"{name} was turned upright using its EXIF orientation tag ({orientation}).")
        except _DAMAGED:
            notes.append(f"{name} has an EXIF orientation tag that could not be applied; it is shown as stored.")
    img = _to_rgb(img, name, notes)
    if max(img.size) > max_side or max(original_size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        notes.append(
            f"{name} is {original_size[0]}x{original_size[1]} pixels; downscaled to {img.size[0]}x{img.size[1]} first."
        )
    return DecodedImage(name, img, original_size, tuple(notes))


def open_image(data: bytes, name: str = "image", max_side: int = DEFAULT_MAX_SIDE) -> Image.Image:
    """Decode one image file safely (see :func:`decode`) and return just the RGB image.

    Args:
        data: the file's bytes.
        name: its name, used in messages.
        max_side: the longest side of the result, in pixels.

    Returns:
        An upright 8-bit RGB PIL image.

    Raises:
        InputError: with a message for people when the file cannot be used.
    """
    return decode(data, name, max_side).image


def decode_many(
    files: Iterable[tuple[str, bytes]], max_images: int = MAX_IMAGES, max_side: int = DEFAULT_MAX_SIDE,
    memo: dict | None = None,
) -> ImageBatch:
    """Decode several files, keeping the ones that work; never raises for bad files.

    Args:
        files: (name, bytes) pairs, in the order given.
        max_images: most images used; the rest are left out with a message.
        max_side: the longest side of each result, in pixels.
        memo: results of an earlier call (e.g. kept in a session), reused for unchanged files and
            updated in place to hold exactly this call's files.

    Returns:
        ImageBatch with the decoded images and one message per file left out.
    """
    files = list(files)
    batch = ImageBatch()
    if len(files) > max_images:
        batch.problems.append(
            f"{len(files)} images were given; only the first {max_images} are used (the limit keeps memory "
            f"and waiting time in check). Left out: {', '.join(name for name, _ in files[max_images:])}."
        )
        files = files[:max_images]
    earlier = dict(memo or {})
    results: dict = {}
    for name, data in files:
        key = (name, max_side, hashlib.sha1(data).hexdigest())
        if key not in results:
            results[key] = earlier.get(key) or _decode_or_message(data, name, max_side)
        result = results[key]
        (batch.images if isinstance(result, DecodedImage) else batch.problems).append(result)
    if memo is not None:
        memo.clear()
        memo.update(results)
    return batch


def _decode_or_message(data: bytes, name: str, max_side: int) -> DecodedImage | str:
    try:
        return decode(data, name, max_side)
    except InputError as err:
        return str(err)


def sample_images() -> dict[str, Path]:
    """The bundled sample images (assets/images, sources in LICENSES.md), by name without extension."""
    return {path.stem: path for path in sorted(SAMPLES.iterdir()) if path.suffix.lower() in {".jpg", ".jpeg", ".png"}}
