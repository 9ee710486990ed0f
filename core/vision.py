"""Image-text inference: CLIP zero-shot labelling (open_clip) and BLIP captioning (transformers).

Each task follows one shape: prepare the input -> forward under ``torch.inference_mode()`` ->
postprocess into a plain result that carries its measurement. Images arrive already decoded by
:mod:`core.images` (RGB, upright, downscaled); the model's own preprocessing (resize, crop,
normalise) is timed separately so the page can say how much of the time it takes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import registry
from core.catalog import OPEN_CLIP_WEIGHTS, ModelSpec, get_spec, specs
from core.device import choose_device
from core.errors import InputError, ModelUnavailable
from core.measure import Measurement, measured
from core.precision import Decision, apply
from core.progress import OnProgress, Progress, ignore
from core.registry import Resolution

CLIP_KEY = "clip-vit-b-32"
CAPTION_KEY = "blip-base"
DEFAULT_TEMPLATE = "a photo of a {}."
MAX_LABELS = 64
MAX_LABEL_CHARS = 100
MAX_TEMPLATE_CHARS = 200
MAX_PREFIX_CHARS = 200
MAX_BEAMS = 8
MAX_NEW_TOKENS = 100
CLIP_BATCH = 16
CAPTION_BATCH = 4



# --- loaders (called by the registry) -------------------------------------------------------------
@dataclass
class ClipModel:
    """An open_clip model with its image transform (resize, crop, normalise), tokenizer and number format."""

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Callable[[list[str]], Any]
    precision: Decision = field(default_factory=Decision)


@dataclass
class Captioner:
    """A BLIP captioning model with its processor (image processor + tokenizer) and number format."""

    processor: Any
    model: Any
    precision: Decision = field(default_factory=Decision)


def _clip_checkpoint(spec: ModelSpec, resolution: Resolution) -> Path:
    """The open_clip weights file for a local folder or the Hugging Face cache."""
    if resolution.source == "local":
        candidates = [Path(resolution.location) / name for name in OPEN_CLIP_WEIGHTS]
    else:
        from huggingface_hub import try_to_load_from_cache

        found = [try_to_load_from_cache(spec.hub_id, name) for name in OPEN_CLIP_WEIGHTS]
        candidates = [Path(f) for f in found if isinstance(f, str)]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelUnavailable(
        f"{spec.title}: {resolution.detail or resolution.location} holds no open_clip weights "
        f"({' or '.join(OPEN_CLIP_WEIGHTS)}); download the repository `{spec.hub_id}` completely."
    )


def load_clip(spec: ModelSpec, resolution: Resolution) -> ClipModel:
    """Load an open_clip model: by pretrained tag when online, else from a checkpoint file.

    ``spec.options`` holds ``arch`` (an open_clip model name) and ``pretrained`` (its tag); the tag's
    settings (QuickGELU, normalisation, resize mode) apply to a local checkpoint too.
    """
    import open_clip

    from core.precision_probes import clip_probe

    choice = choose_device()
    arch, tag = spec.options["arch"], spec.options["pretrained"]
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
    common = dict(
        # "pure_fp16" casts every weight, so inputs simply follow the parameters' dtype (open_clip's
        # mixed "fp16" keeps some in float32).
        device=choice.device, precision="pure_fp16" if choice.dtype_name == "float16" else "fp32",
        force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
    )
    if resolution.source == "hub":
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=tag, **common)
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(_clip_checkpoint(spec, resolution)), image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"), image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"), **common,
        )
    tokenizer = open_clip.get_tokenizer(arch)
    precision = apply(spec.key, model.eval(), lambda: clip_probe(preprocess, tokenizer), resolution.location, choice.device)
    return ClipModel(model, preprocess, tokenizer, precision)


def load_captioner(spec: ModelSpec, resolution: Resolution) -> Captioner:
    """Load BLIP for captioning (BlipForConditionalGeneration + BlipProcessor) onto the chosen device."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from core.precision_probes import captioner_probe

    choice = choose_device()
    kwargs = dict(local_files_only=resolution.local_files_only)
    processor = BlipProcessor.from_pretrained(resolution.location, **kwargs)
    model = BlipForConditionalGeneration.from_pretrained(resolution.location, dtype=choice.dtype, **kwargs)
    model = model.to(choice.device).eval()
    precision = apply(spec.key, model, lambda: captioner_probe(processor), resolution.location, choice.device)
    return Captioner(processor, model, precision)


# --- input preparation -----------------------------------------------------------------------------
def parse_labels(raw: str | list[str]) -> list[str]:
    """Candidate labels from text (one per line or comma separated) or a list, cleaned.

    Args:
        raw: what the user typed, or a list of labels.

    Returns:
        Labels without blanks and without repeats (case-insensitive), in the order given.

    Raises:
        InputError: fewer than two labels, more than MAX_LABELS, or one longer than MAX_LABEL_CHARS.
    """
    parts = raw if isinstance(raw, list) else (raw or "").replace("\n", ",").split(",")
    labels: list[str] = []
    seen: set[str] = set()
    for part in parts:
        label = " ".join(str(part).split())
        if label and label.lower() not in seen:
            seen.add(label.lower())
            labels.append(label)
    if len(labels) < 2:
        raise InputError(
            "Zero-shot labelling chooses among candidate labels: give at least two, separated by commas or new lines."
        )
    if len(labels) > MAX_LABELS:
        raise InputError(f"{len(labels)} labels were given; use at most {MAX_LABELS}.")
    long = [label for label in labels if len(label) > MAX_LABEL_CHARS]
    if long:
        raise InputError(f"Labels are short names; this one has more than {MAX_LABEL_CHARS} characters: {long[0][:40]}...")
    return labels


def make_prompts(labels: list[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One text prompt per label: ``{}`` in the template is replaced by the label.

    Raises:
        InputError: when the template has no ``{}``.
    """
    if "{}" not in (template or ""):
        raise InputError("The prompt template needs {} where each label goes, for example 'a photo of a {}.'")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InputError(f"The prompt template is a short sentence; keep it under {MAX_TEMPLATE_CHARS} characters.")
    return [template.replace("{}", label) for label in labels]


def _as_list(images) -> list:
    images = [images] if hasattr(images, "size") and not isinstance(images, (list, tuple)) else list(images or [])
    if not images:
        raise InputError("There is no image to work on: upload one, take a photo or pick a sample image.")
    return images


# --- CLIP ------------------------------------------------------------------------------------------
def _placement(module) -> tuple[Any, Any]:
    param = next(module.parameters())
    return param.device, param.dtype


def _encode_images(clip: ClipModel, images: list, batch_size: int, on_progress: OnProgress = ignore) -> tuple[np.ndarray, float]:
    """L2-normalised image embeddings and the seconds spent in the model's preprocessing."""
    import torch

    device, dtype = _placement(clip.model)
    chunks, preprocess_s = [], 0.0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            began = time.perf_counter()
            pixels = torch.stack([clip.preprocess(image) for image in images[start : start + batch_size]])
            pixels = pixels.to(device=device, dtype=dtype)
            preprocess_s += time.perf_counter() - began
            chunks.append(clip.model.encode_image(pixels, normalize=True).float().cpu().numpy())
            on_progress(Progress(min(start + batch_size, len(images)), len(images)))
    return np.concatenate(chunks), preprocess_s


def _encode_texts(clip: ClipModel, texts: list[str]) -> np.ndarray:
    import torch

    device, _ = _placement(clip.model)
    with torch.inference_mode():
        tokens = clip.tokenizer(texts).to(device)
        return clip.model.encode_text(tokens, normalize=True).float().cpu().numpy()


def image_features(loaded: registry.Loaded, images: list, batch_size: int = CLIP_BATCH) -> np.ndarray:
    """CLIP image embeddings, L2-normalised, shape (len(images), embed_dim).

    Args:
        loaded: a CLIP model from :func:`core.registry.load`.
        images: PIL images (decode uploads with :func:`core.images.open_image` first).
        batch_size: images per forward pass.

    Returns:
        The embeddings.
    """
    features, _ = _encode_images(loaded.model, _as_list(images), batch_size)
    return features


def text_features(loaded: registry.Loaded, texts: list[str]) -> np.ndarray:
    """CLIP text embeddings, L2-normalised, shape (len(texts), embed_dim).

    Args:
        loaded: a CLIP model from :func:`core.registry.load`.
        texts: prompts such as ``"a photo of a cat."``.

    Returns:
        The embeddings.
    """
    if not texts:
        raise InputError("There is no text to embed.")
    return _encode_texts(loaded.model, list(texts))


@dataclass
class ZeroShotResult:
    """Zero-shot labels for a batch of images.

    Attributes:
        labels: the candidate labels, in the order of the probability columns.
        prompts: the text given to CLIP for each label.
        probabilities: shape (n_images, n_labels); each row sums to 1.
        top: per image, the most likely label and its probability.
        measurement: latency of the whole batch, with ``images_per_s`` and ``preprocess_s``.
    """

    labels: list[str]
    prompts: list[str]
    probabilities: np.ndarray
    top: list[tuple[str, float]]
    measurement: Measurement
    notes: list[str] = field(default_factory=list)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def zero_shot(
    loaded: registry.Loaded, images, labels: list[str], template: str = DEFAULT_TEMPLATE,
    on_progress: OnProgress = ignore, batch_size: int = CLIP_BATCH,
) -> ZeroShotResult:
    """Label images with CLIP by comparing them with one text prompt per candidate label.

    Args:
        loaded: a CLIP model from :func:`core.registry.load`.
        images: one PIL image or a list of them.
        labels: candidate labels (cleaned with :func:`parse_labels`).
        template: prompt with ``{}`` where the label goes.
        on_progress: told the images done after each batch.
        batch_size: images per forward pass.

    Returns:
        ZeroShotResult; probabilities are a softmax over the labels of CLIP's scaled cosine similarities.

    Raises:
        InputError: no image, fewer than two labels, a template without ``{}``.
    """
    images = _as_list(images)
    labels = parse_labels(labels)
    prompts = make_prompts(labels, template)
    clip: ClipModel = loaded.model
    with measured() as timing:
        image_vectors, preprocess_s = _encode_images(clip, images, batch_size, on_progress)
        text_vectors = _encode_texts(clip, prompts)
        scale = float(clip.model.logit_scale.detach().exp())
        probabilities = _softmax(scale * image_vectors.astype(np.float64) @ text_vectors.astype(np.float64).T)
    top = [(labels[int(row.argmax())], float(row.max())) for row in probabilities]
    measurement = loaded.measurement(
        timing.seconds, timing.peak_mb,
        images_per_s=len(images) / max(timing.seconds, 1e-9), preprocess_s=preprocess_s,
    )
    return ZeroShotResult(labels, prompts, probabilities, top, measurement)


# --- captioning -----------------------------------------------------------------------------------
@dataclass
class CaptionResult:
    """Captions, one per image, and what producing them cost.

    Attributes:
        captions: one caption per image (starting with the prefix when one was given).
        prefix: the text the captions were asked to continue.
        notes: changes made to the request (e.g. a prefix cut to length).
        measurement: latency of all images, with ``images_per_s``, ``preprocess_s`` and ``tokens_per_s``.
    """

    captions: list[str]
    prefix: str
    notes: list[str]
    measurement: Measurement

    @property
    def text(self) -> str:
        """The caption of the first (or only) image."""
        return self.captions[0]


def _check_decoding(beams: int, max_new_tokens: int) -> None:
    if not 1 <= int(beams) <= MAX_BEAMS:
        raise InputError(f"Beams must be between 1 (greedy) and {MAX_BEAMS}; got {beams}.")
    if not 1 <= int(max_new_tokens) <= MAX_NEW_TOKENS:
        raise InputError(f"New tokens must be between 1 and {MAX_NEW_TOKENS}; got {max_new_tokens}.")


def _fit_prefix(captioner: Captioner, prefix: str, max_new_tokens: int, notes: list[str]) -> str:
    """The prefix cut to the tokens that fit the decoder's positions together with the new tokens."""
    if not prefix:
        return prefix
    positions = captioner.model.config.text_config.max_position_embeddings
    room = max(positions - max_new_tokens - 1, 0)  # one position holds the start token
    ids = captioner.processor.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    if len(ids) <= room:
        return prefix
    notes.append(
        f"The prefix has {len(ids)} tokens; only its first {room} fit the model's {positions} positions "
        f"with {max_new_tokens} new tokens."
    )
    return captioner.processor.tokenizer.decode(ids[:room]).strip()


def caption(
    loaded: registry.Loaded, image, prefix: str = "", beams: int = 1, max_new_tokens: int = 30,
    on_progress: OnProgress = ignore, batch_size: int = CAPTION_BATCH,
) -> CaptionResult:
    """Caption one image or several with BLIP, optionally continuing a text prefix.

    Args:
        loaded: a captioning model from :func:`core.registry.load`.
        image: one PIL image or a list of them.
        prefix: text the caption must start with (e.g. ``"a picture of"``), or empty.
        beams: 1 for greedy decoding, more for beam search.
        max_new_tokens: most tokens generated per caption.
        on_progress: told the images done after each batch.
        batch_size: images per generate call.

    Returns:
        CaptionResult with one caption per image.

    Raises:
        InputError: no image, or decoding settings out of range.
    """
    import torch

    images = _as_list(image)
    _check_decoding(beams, max_new_tokens)
    prefix = " ".join((prefix or "").split())
    notes = []
    if len(prefix) > MAX_PREFIX_CHARS:
        notes.append(f"The prefix was cut to its first {MAX_PREFIX_CHARS} characters.")
        prefix = prefix[:MAX_PREFIX_CHARS]
    captioner: Captioner = loaded.model
    prefix = _fit_prefix(captioner, prefix, int(max_new_tokens), notes)
    device, dtype = _placement(captioner.model)
    pad_id = captioner.model.config.text_config.pad_token_id
    captions, preprocess_s, new_tokens = [], 0.0, 0
    with measured() as timing, torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            began = time.perf_counter()
            prompts = [prefix] * len(batch) if prefix else None
            inputs = captioner.processor(images=batch, text=prompts, return_tensors="pt").to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            preprocess_s += time.perf_counter() - began
            output = captioner.model.generate(
                **inputs, num_beams=int(beams), max_new_tokens=int(max_new_tokens), do_sample=False,
            )
            prompt_length = inputs["input_ids"].shape[1] - 1 if prefix else 1  # generate drops the final [SEP]
            new_tokens += int((output[:, prompt_length:] != pad_id).sum())
            captions.extend(c.strip() for c in captioner.processor.batch_decode(output, skip_special_tokens=True))
            on_progress(Progress(len(captions), len(images)))
    measurement = loaded.measurement(
        timing.seconds, timing.peak_mb,
        images_per_s=len(images) / max(timing.seconds, 1e-9), preprocess_s=preprocess_s,
        tokens_per_s=new_tokens / max(timing.seconds, 1e-9),
    )
    return CaptionResult(captions, prefix, notes, measurement)


# --- availability ---------------------------------------------------------------------------------
OFFLINE_WHY = (
    "No offline copy of CLIP or BLIP weights exists on PyPI, so these models come from the Hugging Face Hub; "
    "this machine cannot reach it and has no local copy."
)


def unavailable(keys: tuple[str, ...] | None = None) -> dict[str, str]:
    """Which image-text models cannot load here, and the registry's how-to-get-it message for each.

    Args:
        keys: catalog keys to check; all image-text models when None.

    Returns:
        {key: message} for models neither loaded already nor resolvable (loads nothing).
    """
    keys = keys if keys is not None else tuple(spec.key for spec in specs(family="image-text"))
    loaded = {entry.spec.key for entry in registry.CACHE.snapshot()}
    answers = {key: registry.availability(get_spec(key)) for key in keys if key not in loaded}
    return {key: answer.reason for key, answer in answers.items() if answer.resolution is None}
