"""Text inference: input preparation, sentiment classification and sentence embeddings (generation: core/textgen.py).

Each task follows one shape: prepare the input -> forward under ``torch.inference_mode()`` ->
postprocess into a plain result that carries its measurement.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from core import registry
from core.catalog import ASSETS, ModelSpec, get_spec
from core.config import get_settings
from core.device import choose_device
from core.errors import InputError
from core.heads import LinearHead
from core.measure import Measurement, measured
from core.precision import BF16, INT8, Decision, apply, bf16_label, format_of
from core.registry import Resolution

# --- input preparation -----------------------------------------------------------------------------
@dataclass
class PreparedText:
    """Texts ready for a model, and notes on what was changed on the way."""

    texts: list[str]
    notes: list[str] = field(default_factory=list)


def prepare_texts(raw: str, many: bool = False) -> PreparedText:
    """Clean user text: refuse empty input, truncate long input, split lines when ``many``.

    Args:
        raw: what the user typed or pasted.
        many: one text per non-empty line instead of one text.

    Returns:
        PreparedText with notes for every truncation.

    Raises:
        InputError: when nothing usable is left.
    """
    settings = get_settings()
    raw = (raw or "").replace("\x00", "")
    notes: list[str] = []
    if many:
        texts = [line.strip() for line in raw.splitlines() if line.strip()]
        if len(texts) > settings.max_batch_lines:
            notes.append(f"Only the first {settings.max_batch_lines} of {len(texts)} lines are classified.")
            texts = texts[: settings.max_batch_lines]
    else:
        texts = [raw.strip()] if raw.strip() else []
    if not texts:
        raise InputError("There is no text to work on: type or paste some text first.")
    cut = []
    for i, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            cut.append(len(text))
            texts[i] = text[: settings.max_text_chars]
    if cut:
        notes.append(
            f"{len(cut)} text(s) were longer than {settings.max_text_chars:,} characters "
            f"(longest {max(cut):,}) and were truncated to that length."
        )
    return PreparedText(texts, notes)


def _token_note(tokenizer, texts: list[str], max_length: int) -> list[str]:
    """A note when texts are longer than the model reads. Each text is tokenised only up to one token past
    ``max_length``: a long text costs no more, and the tokenizer logs no "sequence length" warning."""
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length + 1)["input_ids"]]
    over = sum(n > max_length for n in lengths)
    if not over:
        return []
    return [f"{over} text(s) have more than {max_length} tokens; the model reads only the first {max_length}."]


def from_pretrained(cls, resolution: Resolution, **kwargs):
    return cls.from_pretrained(resolution.location, local_files_only=resolution.local_files_only, **kwargs)


def warm_up(tokenizer, model) -> None:
    """One tiny forward pass at load time, so the first user call is not charged for one-time set-up."""
    import torch

    with torch.inference_mode():
        model(**tokenizer(["warm up"], return_tensors="pt").to(model.device))


# --- loaders (called by the registry) -------------------------------------------------------------
@dataclass
class SequenceClassifier:
    """A transformers sequence-classification model with its tokenizer (``precision``: its number format)."""

    tokenizer: Any
    model: Any
    labels: list[str]
    max_length: int = 512
    precision: Decision = field(default_factory=Decision)


@dataclass
class TextEncoder:
    """A sentence encoder: mean pooling over tokens, then L2 normalisation (``precision``: its number format)."""

    tokenizer: Any
    model: Any
    max_length: int = 256
    precision: Decision = field(default_factory=Decision)


@dataclass
class EmbeddingClassifier:
    """A linear head on a sentence encoder; the encoder is loaded beside it (see :class:`SentimentModel`)."""

    head: LinearHead


def load_sequence_classifier(spec: ModelSpec, resolution: Resolution) -> SequenceClassifier:
    """Load a transformers sequence classifier onto the chosen device."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.precision_probes import classifier_probe

    choice = choose_device()
    tokenizer = from_pretrained(AutoTokenizer, resolution)
    model = from_pretrained(AutoModelForSequenceClassification, resolution).to(choice.device).eval()
    labels = [model.config.id2label[i].lower() for i in range(model.config.num_labels)]
    max_length = min(512, tokenizer.model_max_length)
    precision = apply(spec.key, model, lambda: classifier_probe(tokenizer, max_length), resolution.location, choice.device)
    warm_up(tokenizer, model)
    return SequenceClassifier(tokenizer, model, labels, max_length, precision)


def load_text_encoder(spec: ModelSpec, resolution: Resolution) -> TextEncoder:
    """Load a sentence encoder (a BERT-style transformers model) onto the chosen device."""
    from transformers import AutoModel, AutoTokenizer

    from core.precision_probes import text_encoder_probe

    choice = choose_device()
    tokenizer = from_pretrained(AutoTokenizer, resolution)
    model = from_pretrained(AutoModel, resolution).to(choice.device).eval()
    max_length = min(256, tokenizer.model_max_length)
    precision = apply(spec.key, model, lambda: text_encoder_probe(tokenizer, max_length), resolution.location, choice.device)
    warm_up(tokenizer, model)
    return TextEncoder(tokenizer, model, max_length, precision)


def load_embedding_head(spec: ModelSpec, resolution: Resolution) -> EmbeddingClassifier:
    """Load the project's sentiment head from assets/; its encoder loads through the registry."""
    return EmbeddingClassifier(LinearHead.load(ASSETS / spec.bundled))


def sentiment_head_record(key: str = "minilm-sentiment") -> dict:
    """How the project's sentiment head was trained (examples, held-out accuracy ...), from its JSON."""
    import json

    config = ASSETS / get_spec(key).bundled / "head.json"
    return json.loads(config.read_text(encoding="utf-8")).get("record", {}) if config.exists() else {}


# --- sentiment ------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """One classified text; a hosted chat model names a label without a score (None), or none at all."""

    text: str
    label: str | None
    score: float | None = None


@dataclass
class ClassificationResult:
    """Predictions for a batch of texts, with notes on the input and the measurement."""

    predictions: list[Prediction]
    notes: list[str]
    measurement: Measurement
    compared: "Int8Comparison | None" = None  # an int8 run: the float model on the same texts


def in_length_order(texts: Sequence[str], batch_size: int, encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """``encode`` applied to batches of texts of similar length, its rows returned in the order of ``texts``.

    Sorting by length first means a batch pads its texts to a similar length, so little compute goes to
    padding; the results are the same as in input order (padding is masked out).
    """
    order = np.argsort([len(t) for t in texts], kind="stable")
    merged = np.concatenate([encode([texts[i] for i in order[s : s + batch_size]]) for s in range(0, len(texts), batch_size)])
    rows = np.empty_like(merged)
    rows[order] = merged
    return rows


def encode_with(encoder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Sentence embeddings of ``texts`` with a loaded encoder on any engine, in batches of similar length.

    Args:
        encoder: a :class:`TextEncoder` (PyTorch) or an engine's encoder with ``encode(texts)`` (ONNX Runtime).
        texts: already prepared texts.
        batch_size: texts per forward pass.

    Returns:
        float32 array (len(texts), dim), mean pooled and L2-normalised.
    """
    if not isinstance(encoder, TextEncoder):
        return in_length_order(list(texts), batch_size, encoder.encode)
    import torch

    device = choose_device().device

    def encode(chunk: list[str]) -> np.ndarray:
        batch = encoder.tokenizer(chunk, padding=True, truncation=True, max_length=encoder.max_length,
                                  return_tensors="pt").to(device)
        hidden = encoder.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()

    with torch.inference_mode():
        return in_length_order(list(texts), batch_size, encode)


def embed(encoder: registry.Loaded, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings (mean pooled, L2-normalised) from a loaded encoder, shape (len(texts), dim)."""
    return encode_with(encoder.model, texts, batch_size)


@dataclass
class SentimentModel:
    """A sentiment model ready to run (from :func:`core.engines.load_sentiment`).

    Attributes:
        classifier: the catalog model: a :class:`SequenceClassifier`, or an :class:`EmbeddingClassifier` head.
        encoder: a head's sentence encoder, loaded on the engine that runs it; None for a classifier.
        engine: what runs the encoder (None: PyTorch, the Measurement's default).
        engine_note: why the engine is not the one asked for, or "".
        int8: the dynamically quantised (int8 linear layers) variant.
    """

    classifier: registry.Loaded
    encoder: registry.Loaded | None = None
    engine: str | None = None
    engine_note: str = ""
    int8: bool = False


def classify(model: SentimentModel, texts: list[str], batch_size: int = 32) -> ClassificationResult:
    """Classify prepared texts with a loaded sentiment model.

    Args:
        model: from :func:`core.engines.load_sentiment`.
        texts: output of :func:`prepare_texts`.
        batch_size: texts per forward pass.

    Returns:
        ClassificationResult with one Prediction per text; ``measurement.engine`` says what ran it.
    """
    import torch

    loaded = model.classifier
    if model.encoder is not None:
        runner = model.encoder.model
        notes = _token_note(runner.tokenizer, texts, runner.max_length) + ([model.engine_note] if model.engine_note else [])
        with measured() as timing:
            probs = loaded.model.head.predict_proba(encode_with(runner, texts, batch_size))
        labels = loaded.model.head.labels
        load_s = sum(s for s in (loaded.load_s, model.encoder.load_s) if s is not None) or None
        measurement = loaded.measurement(timing.seconds, timing.peak_mb, load_s, engine=model.engine)
        if format_of(runner) == BF16:  # the encoder's number format, not the head's
            measurement.device, measurement.number_format = bf16_label(measurement.device), BF16
        measurement.source = model.encoder.resolution.source
        measurement.model_id = model.encoder.spec.hub_id or model.encoder.spec.key
    else:
        classifier = loaded.model
        notes = _token_note(classifier.tokenizer, texts, classifier.max_length)
        device = choose_device().device

        def scores(chunk: list[str]) -> np.ndarray:
            batch = classifier.tokenizer(chunk, padding=True, truncation=True, max_length=classifier.max_length,
                                         return_tensors="pt").to(device)
            return torch.softmax(classifier.model(**batch).logits.float(), dim=-1).cpu().numpy()

        with measured() as timing, torch.inference_mode():
            probs = in_length_order(texts, batch_size, scores)
        labels = classifier.labels
        measurement = loaded.measurement(timing.seconds, timing.peak_mb)
    best = probs.argmax(axis=1)
    predictions = [Prediction(t, labels[i], float(probs[row, i])) for row, (t, i) in enumerate(zip(texts, best))]
    measurement.extra["texts_per_s"] = len(texts) / max(timing.seconds, 1e-9)
    if model.int8:  # the device label names the number format: int8 here, not the float32 of the device choice
        measurement.model += "@int8"
        device = measurement.device
        measurement.device = device.replace("float32", "int8") if "float32" in device else f"{device} · int8"
        measurement.number_format = INT8
    return ClassificationResult(predictions, notes, measurement)


@dataclass
class Int8Comparison:
    """The int8 variant next to the float model on the same texts: the speed-up and what it costs."""

    int8: ClassificationResult
    float32: ClassificationResult
    agreement: float
    max_score_change: float  # largest |score difference| among texts given the same label

    @property
    def speedup(self) -> float:
        return self.float32.measurement.latency_s / max(self.int8.measurement.latency_s, 1e-9)


def compare_int8(float_model: SentimentModel, int8_model: SentimentModel, texts: list[str]) -> Int8Comparison:
    """Classify with the int8 variant and the float model (both on PyTorch), and measure how far their answers differ."""
    float32 = classify(float_model, texts)
    int8 = classify(int8_model, texts)
    pairs = list(zip(int8.predictions, float32.predictions))
    agreement = sum(a.label == b.label for a, b in pairs) / len(pairs)
    change = max((abs(a.score - b.score) for a, b in pairs if a.label == b.label), default=0.0)
    return Int8Comparison(int8, float32, agreement, change)


def classify_int8(models: tuple[SentimentModel, SentimentModel], texts: list[str]) -> ClassificationResult:
    """The int8 variant's result on ``texts``, carrying its comparison with the float model (``compared``).

    Args:
        models: the float and the int8 model, from :func:`core.engines.load_int8_pair`.
        texts: output of :func:`prepare_texts`.
    """
    comparison = compare_int8(*models, texts)
    comparison.int8.compared = comparison
    return comparison.int8
