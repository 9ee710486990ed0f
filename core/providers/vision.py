"""Images in a vision chat: captions and zero-shot labels, one hosted chat call per image."""
from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence

from core.errors import InputError
from core.vision import CaptionResult, ZeroShotResult
from core.progress import OnProgress, Progress, ignore
from core.providers.chat import ask_labels, chat
from core.providers.endpoints import Endpoint
from core.providers.http import hosted_measurement

CAPTION_PROMPT = "Describe this image in one short sentence."
LABEL_IMAGE_SYSTEM = ("You are an image classifier. Answer with exactly one label from the list, copied exactly, "
                      "and nothing else.")
MAX_SENT_SIDE = 1024  # images are sent at most this large on their longest side


def image_data_url(image) -> str:
    """A PIL image as a ``data:image/jpeg;base64,...`` URL (at most MAX_SENT_SIDE px), as vision chat APIs take it."""
    image = image.convert("RGB")
    if max(image.size) > MAX_SENT_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SENT_SIDE, MAX_SENT_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def caption(point: Endpoint, images: Sequence, prompt: str = CAPTION_PROMPT, max_tokens: int = 60,
            max_calls: int = 64, on_progress: OnProgress = ignore) -> CaptionResult:
    """Caption images with a vision chat model, one call per image.

    Args:
        point: a chat endpoint whose model reads images.
        images: PIL images (decoded by :mod:`core.images`).
        prompt: what to ask about each image.
        max_tokens: longest caption.
        max_calls: refuse more images than this (each one is a paid call).
        on_progress: told after each image (``done`` images of ``total``).

    Returns:
        CaptionResult (no prefix), as a local captioner gives; its measurement has images_per_s, tokens_per_s (output tokens over all calls) and cost_usd.
    """
    if not images:
        raise InputError("There is no image to caption yet: upload one or pick a sample.")
    if len(images) > max_calls:
        raise InputError(f"{len(images)} images would be {len(images)} paid calls; the limit is {max_calls}.")
    start = time.perf_counter()
    answers = []
    for done, image in enumerate(images, 1):
        answers.append(chat(point, prompt, max_tokens=max_tokens, temperature=0.0, image_url=image_data_url(image)))
        on_progress(Progress(done, len(images), elapsed_s=time.perf_counter() - start))
    seconds = time.perf_counter() - start
    output_tokens = sum(a.new_tokens for a in answers)
    extra = {"images_per_s": len(images) / seconds if seconds > 0 else 0.0,
             "tokens_per_s": output_tokens / seconds if seconds > 0 else 0.0,
             "cost_usd": point.prices.chat_usd(sum(a.prompt_tokens for a in answers), output_tokens)}
    notes = list(dict.fromkeys(note for a in answers for note in a.notes))
    return CaptionResult([a.text.strip() for a in answers], "", notes, hosted_measurement(point, seconds, **extra))


def label_images(point: Endpoint, images: Sequence, labels: Sequence[str], max_calls: int = 64,
                 on_progress: OnProgress = ignore) -> ZeroShotResult:
    """Zero-shot image labels: a vision chat model is shown each image and asked for one of ``labels``.

    Args:
        point: a chat endpoint whose model reads images.
        images: PIL images.
        labels: the candidate labels.
        max_calls: refuse more images than this (each one is a paid call).
        on_progress: told after each image (``done`` images of ``total``).

    Returns:
        ZeroShotResult without probabilities: ``top`` holds (label, None) per image, label None where the answer
        named none; its measurement has images_per_s and cost_usd.
    """
    if not images:
        raise InputError("There is no image to label yet: upload one or pick a sample.")
    answer = ask_labels(point, images, labels, lambda image: chat(
        point, f"Labels: {', '.join(labels)}\nWhich label fits this image best?\nLabel:", max_tokens=12,
        temperature=0.0, system=LABEL_IMAGE_SYSTEM, image_url=image_data_url(image)), max_calls, on_progress,
        rate="images_per_s")
    return ZeroShotResult(list(labels), [], None, [(label, None) for label in answer.labels], answer.measurement,
                          answer.notes)
