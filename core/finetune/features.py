"""Frozen-encoder features for training heads, kept in one process-wide LRU.

Features are keyed by a hash of (data fingerprint, encoder key, item indices), so retraining a
head, drawing the label-efficiency curve or running zero-shot after transfer reuses them. The
cache is shared by all sessions of the server (it holds derived numbers, never the data), is
thread-safe, and stays within a memory budget (``UBT_FEATURE_CACHE_MB``, 256 MB by default).

Text features are the mean of the encoder's last hidden states over real tokens, L2-normalised
(what all-MiniLM-L6-v2 is trained for); the fine-tune arm trains through :func:`pooled` so it
reads the same representation. Image features come from CLIP's image tower (``core.vision``).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from core import registry
from core.catalog import get_spec, specs
from core.config import get_settings
from core.device import choose_device
from core.errors import InputError, ModelUnavailable
from core.text import in_length_order

TEXT_ENCODERS = ("minilm-l6", "distilbert-sst2")  # a sentence encoder, and a classifier's base model
IMAGE_ENCODERS = tuple(s.key for s in specs(family="image-text", task="zero-shot")) or ("clip-vit-b-32",)
DEFAULT_ENCODER = {"text": "minilm-l6", "image": "clip-vit-b-32"}


def cache_budget_mb() -> float:
    """The feature cache's memory budget: ``UBT_FEATURE_CACHE_MB`` (default 256)."""
    return get_settings().feature_cache_mb


def encoder_kind(key: str) -> str:
    """``text`` or ``image``: what an encoder reads.

    Raises:
        InputError: for an encoder this page cannot use.
    """
    if key in TEXT_ENCODERS:
        return "text"
    if key in IMAGE_ENCODERS:
        return "image"
    raise InputError(f"Unknown encoder {key!r}; this page uses {', '.join(TEXT_ENCODERS + IMAGE_ENCODERS)}.")


def check_encoder(key: str, kind: str) -> None:
    """Refuse an encoder that does not read ``kind`` items (text or image)."""
    if encoder_kind(key) != kind:
        raise InputError(f"The encoder {key!r} reads {encoder_kind(key)}s, but this data holds {kind}s.")


def clip_unavailable(err: ModelUnavailable, key: str) -> ModelUnavailable:
    """The plain message for a CLIP that cannot load: short when no source exists here, else ``err`` itself.

    Args:
        err: what the registry or the loader raised.
        key: the CLIP model's catalog key.
    """
    spec = get_spec(key)
    if registry.availability(spec).resolution is not None:  # a source exists but failed: its own message says why
        return err
    return ModelUnavailable(
        f"CLIP is not available here (needs internet or $UBT_MODEL_DIR/{spec.hub_id}), so this arm cannot run "
        "on images; training from scratch still does."
    )


def unavailable_reason(key: str) -> str | None:
    """Why an encoder cannot load here (None when it can, or is loaded already); loads nothing."""
    if any(entry.spec.key == key for entry in registry.CACHE.snapshot()):
        return None
    answer = registry.availability(get_spec(key))
    if answer.resolution is not None:
        return None
    return str(clip_unavailable(ModelUnavailable(answer.reason), key)) if key in IMAGE_ENCODERS else answer.reason


# --- text encoders ------------------------------------------------------------------------------
@dataclass
class TextBackbone:
    """A transformers encoder with its tokenizer, whichever catalog wrapper it came in."""

    tokenizer: Any
    model: Any
    max_length: int


def text_backbone(loaded: registry.Loaded) -> TextBackbone:
    """The encoder inside a loaded text model: a sentence encoder, or a classifier's base model.

    Raises:
        InputError: when the model holds no transformers encoder.
    """
    model = loaded.model
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(model, "tokenizer"):
        raise InputError(f"{loaded.spec.title} is not a text encoder.")
    if hasattr(inner, "base_model") and inner.base_model is not inner:  # a classifier: read its encoder
        inner = inner.base_model
    return TextBackbone(model.tokenizer, inner, model.max_length)


def encoder_layers(model) -> list:
    """The transformer blocks of a BERT-like (``encoder.layer``) or DistilBERT (``transformer.layer``) model.

    Raises:
        InputError: for an architecture without a known list of blocks.
    """
    for path in ("encoder.layer", "transformer.layer"):
        obj = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if obj is not None:
            return list(obj)
    raise InputError(f"Cannot find the transformer layers of {type(model).__name__} to fine-tune.")


def tokenize(backbone: TextBackbone, texts: Sequence[str], device: str) -> dict:
    """Padded, truncated token tensors for a batch of texts, on ``device``."""
    batch = backbone.tokenizer(
        list(texts), padding=True, truncation=True, max_length=backbone.max_length, return_tensors="pt",
    )
    batch.pop("token_type_ids", None)  # single sentences; DistilBERT takes none
    return {name: tensor.to(device) for name, tensor in batch.items()}


def pooled(model, batch: dict):
    """Mean of the last hidden states over real tokens, L2-normalised: shape (batch, hidden)."""
    import torch

    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, dim=-1)


def encode_texts(key: str, texts: Sequence[str], batch_size: int = 32) -> tuple[np.ndarray, registry.Loaded]:
    """Sentence features of ``texts`` with a frozen text encoder, shape (len(texts), hidden).

    A sentence encoder runs on the engine :func:`core.engines.load_encoder` picks (ONNX Runtime where its export
    agrees with PyTorch); a classifier's base model runs on PyTorch.

    Args:
        key: catalog key of a text encoder (see :data:`TEXT_ENCODERS`).
        texts: the texts.
        batch_size: texts per forward pass.

    Returns:
        float32 L2-normalised features and the Loaded encoder.
    """
    import torch

    from core.engines import load_encoder
    from core.text import encode_with

    if get_spec(key).task == "embedding":
        loaded, _ = load_encoder(key)
        return encode_with(loaded.model, texts, batch_size).astype(np.float32), loaded
    loaded = registry.load(key)
    backbone = text_backbone(loaded)
    device = choose_device().device
    with torch.inference_mode():
        values = in_length_order(list(texts), batch_size, lambda chunk: pooled(backbone.model, tokenize(backbone, chunk, device)).float().cpu().numpy())
    return values.astype(np.float32), loaded


def encode_images(key: str, images: Sequence) -> tuple[np.ndarray, registry.Loaded]:
    """CLIP image-tower features (L2-normalised) of PIL images.

    Raises:
        ModelUnavailable: when CLIP cannot be loaded here, saying so plainly.
    """
    from core import vision

    try:
        loaded = registry.load(key)
        values = vision.image_features(loaded, list(images))
    except ModelUnavailable as err:
        raise clip_unavailable(err, key) from None
    return np.asarray(values, np.float32), loaded


def encoder_engine(key: str) -> str:
    """The engine that computes encoder ``key``'s features (see :func:`encode_texts`): a sentence encoder's
    from :func:`core.engines.load_encoder` (cached after its first load), PyTorch for every other encoder."""
    from core.engines import TORCH, load_encoder

    if encoder_kind(key) != "text" or get_spec(key).task != "embedding":
        return TORCH
    return load_encoder(key)[1].engine


def encoder_number_format(key: str) -> str:
    """The number format encoder ``key``'s features are computed in: float32 on an engine other than PyTorch, else
    the PyTorch model's own (bf16 where :mod:`core.precision` chose it on this machine)."""
    from core.engines import TORCH
    from core.precision import FP32, format_of

    if encoder_engine(key) != TORCH:
        return FP32
    return format_of(registry.load(key).model)


def encode(key: str, items: Sequence) -> tuple[np.ndarray, registry.Loaded]:
    """Features of texts or images with the encoder ``key`` (no caching)."""
    return encode_texts(key, items) if encoder_kind(key) == "text" else encode_images(key, items)


# --- the cache ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Features:
    """Features of some items and what they cost.

    Attributes:
        values: float32 array (items, dim).
        seconds: what computing them took when they were computed (load excluded).
        cached: whether this call found them in the cache.
        encoder: the encoder's catalog key.
        source: where the encoder's weights came from.
        load_s: seconds spent loading the encoder for this call, None when it was loaded already.
    """

    values: np.ndarray
    seconds: float
    cached: bool
    encoder: str
    source: str
    load_s: float | None


def cache_key(fingerprint: str, encoder: str, indices: Sequence[int]) -> str:
    """Hash of (data fingerprint, encoder key, item indices)."""
    raw = json.dumps([fingerprint, encoder, [int(i) for i in indices]])
    return hashlib.sha256(raw.encode()).hexdigest()


class FeatureCache:
    """Thread-safe LRU of feature arrays within a memory budget.

    Two callers missing the same key compute it once: the second waits for the first.
    """

    def __init__(self, budget_mb: float) -> None:
        self.budget_bytes = int(budget_mb * 2**20)
        self._entries: OrderedDict[str, Features] = OrderedDict()
        self._computing: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def used_mb(self) -> float:
        """Memory held by the cached arrays."""
        with self._lock:
            return sum(f.values.nbytes for f in self._entries.values()) / 2**20

    def clear(self) -> None:
        """Drop every entry and reset the hit and miss counts."""
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def _lookup(self, key: str) -> Features | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def get_or_compute(self, key: str, compute) -> Features:
        """The cached Features for ``key``, or ``compute()`` them and cache them.

        Args:
            key: from :func:`cache_key`.
            compute: returns a Features (with ``cached`` False).

        Returns:
            Features, with ``cached`` True when they came from the cache.
        """
        while True:
            with self._lock:
                entry = self._lookup(key)
                if entry is not None:
                    return Features(entry.values, entry.seconds, True, entry.encoder, entry.source, None)
                waiting = self._computing.get(key)
                if waiting is None:
                    self._computing[key] = threading.Event()
                    self.misses += 1
                    break
            waiting.wait()  # another thread computes this key; then look again
        try:
            fresh = compute()
            self._store(key, fresh)
            return fresh
        finally:
            with self._lock:
                self._computing.pop(key).set()

    def _store(self, key: str, features: Features) -> None:
        size = features.values.nbytes
        if size > self.budget_bytes:
            return  # larger than the whole budget: used once, not kept
        with self._lock:
            while self._entries and sum(f.values.nbytes for f in self._entries.values()) + size > self.budget_bytes:
                self._entries.popitem(last=False)
            self._entries[key] = features


FEATURES = FeatureCache(cache_budget_mb())


def features_for(data, indices: Sequence[int], encoder: str) -> Features:
    """Features of ``data.items[indices]`` from the cache, computed on a miss.

    Args:
        data: a LabelledData (its ``fingerprint`` identifies it).
        indices: which items, in order.
        encoder: catalog key of an encoder that reads ``data.kind``.

    Returns:
        Features with one row per index.
    """
    check_encoder(encoder, data.kind)

    def compute() -> Features:
        items = [data.items[i] for i in indices]
        start = time.perf_counter()
        values, loaded = encode(encoder, items)
        seconds = time.perf_counter() - start - (loaded.load_s or 0.0)
        return Features(values, max(seconds, 0.0), False, encoder, loaded.resolution.source, loaded.load_s)

    return FEATURES.get_or_compute(cache_key(data.fingerprint, encoder, indices), compute)
