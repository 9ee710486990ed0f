"""Hosted text-to-image: OpenAI's ``/images/generations`` (base64 JSON), Hugging Face Inference Providers'
``hf-inference`` route (image bytes), and Replicate's predictions (``Prefer: wait``, then the output URL)."""
from __future__ import annotations

import base64
import io
import re
import time
from urllib.parse import urlsplit

from core.errors import InputError
from core.imagegen.common import ImageResult
from core.providers import http
from core.providers.endpoints import HF_IMAGES, IMAGE_KINDS, IMAGES, REPLICATE_IMAGES, Endpoint
from core.providers.http import (HostedError, check_reachable, hosted_measurement, post, read_body, read_json,
                                 require_key, scrub, send, with_one_retry)

MAX_IMAGE_PIXELS = 4096 * 4096  # a generated image larger than this is refused as oversized
MODEL_NAME = re.compile(r"^\w[\w.-]*/\w[\w.-]*$")  # owner/name, as Hugging Face and Replicate spell models
REPLICATE_POLL_S = 1.0


def image_kind(point: Endpoint) -> str:
    """Which of :data:`IMAGE_KINDS` the endpoint's provider speaks; InputError when none."""
    for kind in point.provider.kinds:
        if kind in IMAGE_KINDS:
            return kind
    raise InputError(f"{point.provider.title} does not generate images here; pick another provider.")


def _decode_image(data: bytes, point: Endpoint):
    """The endpoint's image bytes as an upright 8-bit RGB PIL image and their MIME type, decoded by
    :func:`core.images.decode` (the app's one safe decoder) at full size; HostedError when they are not an image
    or hold more than MAX_IMAGE_PIXELS."""
    from PIL import Image, UnidentifiedImageError

    from core import images

    where = point.provider.title
    not_image = f"{where} sent {len(data):,} bytes that are not a readable image"
    try:
        with Image.open(io.BytesIO(data)) as header:  # the header only: size and format, nothing decoded
            (width, height), mime = header.size, Image.MIME.get(header.format or "", "application/octet-stream")
    except Image.DecompressionBombError:
        raise HostedError("oversized", f"{where} sent an image of more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise HostedError("malformed", f"{not_image} ({type(err).__name__}; they start {data[:12]!r}).") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise HostedError("oversized", f"{where} sent a {width}x{height} image; the most this app decodes is "
                          f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels.")
    try:
        return images.decode(data, "the image", max_side=max(width, height)).image, mime
    except InputError as err:
        raise HostedError("malformed", f"{not_image}: {err}") from None


def _fetch(point: Endpoint, url: object) -> bytes:
    """GET an output file the endpoint pointed to (the key goes only to the endpoint's own host)."""
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"the answer names no http(s) image URL (got {str(url)[:60]!r})")
    return read_body(send(point, "GET", url), point)


def _openai_image(point: Endpoint, prompt: str, width: int, height: int, notes: list[str]) -> tuple[bytes, dict]:
    """OpenAI's images API (documented schema): ``data[0].b64_json`` (or ``data[0].url``)."""
    size = f"{width}x{height}"
    payload = {"model": point.model, "prompt": prompt, "n": 1, "size": size}
    if point.model.startswith(("gpt-image", "dall-e-3")):  # these make 1024 px and always answer base64
        payload["size"] = "1024x1024"
        notes.append(f"{point.model} makes images of 1024x1024 px at least; {size} was asked for.")
    else:
        payload["response_format"] = "b64_json"
    answer = read_json(post(point, "/images/generations", payload), point)
    first = (answer.get("data") or [None])[0]
    if not isinstance(first, dict) or not (first.get("b64_json") or first.get("url")):
        raise ValueError("no data[0].b64_json or data[0].url in the answer")
    if first.get("b64_json"):
        data = base64.b64decode(first["b64_json"], validate=True)
        if len(data) > http.MAX_RESPONSE_BYTES:
            raise HostedError("oversized", f"{point.provider.title} sent an image of more than "
                              f"{http.MAX_RESPONSE_BYTES / 2**20:.0f} MB; this app stopped reading it.")
        return data, {}
    return _fetch(point, first["url"]), {}


def _hf_image(point: Endpoint, prompt: str, width: int, height: int, seed: int, steps: int | None,
              negative_prompt: str) -> tuple[bytes, dict]:
    """Hugging Face Inference Providers' ``hf-inference`` text-to-image route: JSON in, image bytes out."""
    parameters = {"width": width, "height": height, "seed": seed, "num_inference_steps": steps,
                  "negative_prompt": negative_prompt or None}
    payload = {"inputs": prompt, "parameters": {k: v for k, v in parameters.items() if v is not None}}
    return read_body(post(point, f"/models/{point.model}", payload, headers={"Accept": "image/png"}), point), {}


def _replicate_image(point: Endpoint, prompt: str, seed: int, notes: list[str], sleep) -> tuple[bytes, dict]:
    """Replicate: create a prediction and wait for it (``Prefer: wait``, then polling ``urls.get`` until the
    endpoint's timeout), then GET the first output file (without the key: it lives on another host)."""
    deadline = time.monotonic() + point.timeout_s
    payload = {"input": {"prompt": prompt, "seed": seed, "num_outputs": 1, "output_format": "png"}}
    wait = max(1, min(60, int(point.timeout_s)))
    prediction = read_json(post(point, f"/models/{point.model}/predictions", payload, headers={"Prefer": f"wait={wait}"}), point)
    while prediction.get("status") in ("starting", "processing"):
        poll = (prediction.get("urls") or {}).get("get")
        if not poll or time.monotonic() + REPLICATE_POLL_S > deadline:
            raise HostedError("timeout", f"{point.provider.title} had not finished the image within "
                              f"{point.timeout_s:.0f} s (the timeout setting); its status was {prediction.get('status')!r}.")
        sleep(REPLICATE_POLL_S)
        prediction = read_json(send(point, "GET", poll), point)
    status = prediction.get("status")
    if status != "succeeded":
        detail = scrub(prediction.get("error") or "no reason given", point.api_key)
        raise HostedError("failed", f"{point.provider.title}'s prediction ended {status!r}: {detail}.")
    output = prediction.get("output")
    outputs = output if isinstance(output, list) else [output]
    if len(outputs) > 1:
        notes.append(f"{point.provider.title} sent {len(outputs)} images; the first is shown and charged.")
    predict_s = (prediction.get("metrics") or {}).get("predict_time")
    figures = {"server_predict_s": float(predict_s)} if isinstance(predict_s, (int, float)) else {}
    return _fetch(point, outputs[0] if outputs else None), figures


def generate_image(point: Endpoint, prompt: str, width: int = 512, height: int = 512, seed: int = 0,
                   steps: int | None = None, negative_prompt: str = "", sleep=time.sleep) -> ImageResult:
    """Generate one image on a hosted endpoint: OpenAI-compatible images, Hugging Face, or Replicate.

    Args:
        point: an endpoint whose provider speaks one of :data:`IMAGE_KINDS`.
        prompt: what the image should show.
        width, height: pixels asked for (OpenAI's newer models and Replicate's choose their own; a note says so).
        seed: sent where the API takes one (Hugging Face, Replicate).
        steps: denoising steps, sent to Hugging Face only (None: the model's default).
        negative_prompt: what to avoid, sent to Hugging Face only.
        sleep: how to wait between Replicate polls and before the one retry after a 429.

    Returns:
        ImageResult with the bytes as sent (``data``, ``mime``); its measurement has images_per_s and cost_usd (the price per image), and server_predict_s
        where the endpoint reports its own compute time.

    Raises:
        InputError: empty prompt, a model name the provider cannot take. HostedError: every failure of the call.
    """
    prompt = (prompt or "").replace("\x00", "").strip()
    if not prompt:
        raise InputError("There is no prompt: describe the image you want first (e.g. “a red fox in the snow”).")
    kind = image_kind(point)
    if kind != IMAGES and not MODEL_NAME.match(point.model):
        raise InputError(f"{point.provider.title} names models owner/name, e.g. {point.provider.models.get('images')}.")
    require_key(point)
    check_reachable(point)
    notes: list[str] = []
    if kind == REPLICATE_IMAGES:
        notes.append(f"{point.provider.title}'s model chooses its own size; it was not asked for {width}x{height}.")

    def call() -> tuple[bytes, dict]:
        if kind == HF_IMAGES:
            return _hf_image(point, prompt, width, height, seed, steps, negative_prompt)
        if kind == REPLICATE_IMAGES:
            return _replicate_image(point, prompt, seed, notes, sleep)
        return _openai_image(point, prompt, width, height, notes)

    start = time.perf_counter()
    data, figures = with_one_retry(call, point, sleep)
    seconds = time.perf_counter() - start
    image, mime = _decode_image(data, point)
    extra = {"images_per_s": 1 / seconds if seconds > 0 else 0.0, "cost_usd": point.prices.per_image, **figures}
    parameters = {"model": point.model, "provider": point.provider.title, "prompt": prompt, "width": width,
                  "height": height, "seed": seed}
    return ImageResult(image, parameters, notes, hosted_measurement(point, seconds, **extra), data=data, mime=mime)
