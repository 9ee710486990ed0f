"""Text inference: sentiment classification, sentence embeddings and streamed generation.

Each task follows one shape: prepare the input -> forward under ``torch.inference_mode()`` ->
postprocess into a plain result that carries its measurement.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from core import registry
from core.catalog import ASSETS, ModelSpec, get_spec
from core.config import get_settings
from core.device import choose_device
from core.errors import InputError
from core.heads import LinearHead
from core.measure import Measurement, PeakTracker, measured
from core.prepare import prepare_once
from core.registry import Resolution

GGUF_MARKER = "converted.json"  # inside a converted folder: where from, how long it took


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


def _from_pretrained(cls, resolution: Resolution, **kwargs):
    return cls.from_pretrained(resolution.location, local_files_only=resolution.local_files_only, **kwargs)


def _warm_up(tokenizer, model) -> None:
    """One tiny forward pass at load time, so the first user call is not charged for one-time set-up."""
    import torch

    with torch.inference_mode():
        model(**tokenizer(["warm up"], return_tensors="pt").to(model.device))


# --- loaders (called by the registry) -------------------------------------------------------------
@dataclass
class SequenceClassifier:
    """A transformers sequence-classification model with its tokenizer."""

    tokenizer: Any
    model: Any
    labels: list[str]
    max_length: int = 512


@dataclass
class TextEncoder:
    """A sentence encoder: mean pooling over tokens, then L2 normalisation."""

    tokenizer: Any
    model: Any
    max_length: int = 256


@dataclass
class EmbeddingClassifier:
    """A linear head on a sentence encoder; the encoder is fetched from the registry per call."""

    head: LinearHead


@dataclass
class CausalLM:
    """A causal language model with its tokenizer; ``chat`` uses the tokenizer's chat template."""

    tokenizer: Any
    model: Any
    chat: bool = False
    context: int = 1024


def load_sequence_classifier(spec: ModelSpec, resolution: Resolution) -> SequenceClassifier:
    """Load a transformers sequence classifier onto the chosen device."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    choice = choose_device()
    tokenizer = _from_pretrained(AutoTokenizer, resolution)
    model = _from_pretrained(AutoModelForSequenceClassification, resolution).to(choice.device).eval()
    labels = [model.config.id2label[i].lower() for i in range(model.config.num_labels)]
    _warm_up(tokenizer, model)
    return SequenceClassifier(tokenizer, model, labels, min(512, tokenizer.model_max_length))


def load_text_encoder(spec: ModelSpec, resolution: Resolution) -> TextEncoder:
    """Load a sentence encoder (a BERT-style transformers model) onto the chosen device."""
    from transformers import AutoModel, AutoTokenizer

    choice = choose_device()
    tokenizer = _from_pretrained(AutoTokenizer, resolution)
    model = _from_pretrained(AutoModel, resolution).to(choice.device).eval()
    _warm_up(tokenizer, model)
    return TextEncoder(tokenizer, model, min(256, tokenizer.model_max_length))


def load_embedding_head(spec: ModelSpec, resolution: Resolution) -> EmbeddingClassifier:
    """Load the project's sentiment head from assets/; its encoder loads through the registry."""
    return EmbeddingClassifier(LinearHead.load(ASSETS / spec.bundled))


def gguf_cache_folder(spec: ModelSpec) -> Path:
    """Where packaged GGUF weights are converted to safetensors, once."""
    return get_settings().converted_dir / spec.key


def needs_conversion(key: str) -> bool:
    """True when loading ``key`` would first convert packaged GGUF weights (tens of seconds)."""
    answer = registry.availability(get_spec(key))  # a model already loaded answers with its own source
    resolution = answer.resolution
    return (resolution is not None and resolution.source == "package" and resolution.location.endswith(".gguf")
            and not gguf_cache_folder(answer.spec).exists())


def convert_gguf(spec: ModelSpec, gguf_path: Path, progress: Callable[[str], None] = lambda _: None) -> Path:
    """Dequantise a GGUF file into a safetensors folder in the cache, once per machine.

    Concurrent callers (sessions, server processes) share one conversion through
    :func:`core.prepare.prepare_once`: the others wait and are told so through ``progress``.

    Args:
        spec: the model's spec.
        gguf_path: the packaged .gguf file.
        progress: called with a line of text at each stage.

    Returns:
        The converted folder.
    """
    def build(folder: Path) -> None:
        import json

        from transformers import AutoModelForCausalLM, AutoTokenizer

        start = time.perf_counter()
        progress(f"Reading the tokenizer from {gguf_path.name} ...")
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        progress("Dequantising the GGUF weights to float32 (tens of seconds, once per machine) ...")
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, attn_implementation="eager")
        # The tensors are already float32; drop the GGUF quantizer marks so transformers saves them.
        model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        progress("Saving safetensors ...")
        tokenizer.save_pretrained(folder)
        model.save_pretrained(folder)
        record = {"from": str(gguf_path), "seconds": round(time.perf_counter() - start, 1)}
        (folder / GGUF_MARKER).write_text(json.dumps(record) + "\n")
        progress(f"Converted in {record['seconds']} s.")

    return prepare_once(gguf_cache_folder(spec), build, progress)


def convert_packaged_weights(key: str, progress: Callable[[str], None] = lambda _: None) -> Path:
    """Convert ``key``'s packaged GGUF weights now, reporting each stage (see :func:`needs_conversion`)."""
    spec = get_spec(key)
    return convert_gguf(spec, Path(registry.resolve(spec).location), progress)


def sentiment_head_record(key: str = "minilm-sentiment") -> dict:
    """How the project's sentiment head was trained (examples, held-out accuracy ...), from its JSON."""
    import json

    config = ASSETS / get_spec(key).bundled / "head.json"
    return json.loads(config.read_text(encoding="utf-8")).get("record", {}) if config.exists() else {}


def load_causal_lm(spec: ModelSpec, resolution: Resolution) -> CausalLM:
    """Load a causal LM; packaged GGUF weights are converted to safetensors first (once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    choice = choose_device()
    if resolution.source == "package" and resolution.location.endswith(".gguf"):
        folder = convert_gguf(spec, Path(resolution.location))
        resolution = Resolution("package", str(folder))
    tokenizer = _from_pretrained(AutoTokenizer, resolution)
    model = _from_pretrained(AutoModelForCausalLM, resolution, dtype=choice.dtype).to(choice.device).eval()
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 1024)
    _warm_up(tokenizer, model)
    return CausalLM(tokenizer, model, bool(spec.options.get("chat")) and tokenizer.chat_template is not None, int(context))


# --- sentiment ------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """One classified text."""

    text: str
    label: str
    score: float


@dataclass
class ClassificationResult:
    """Predictions for a batch of texts, with notes on the input and the measurement."""

    predictions: list[Prediction]
    notes: list[str]
    measurement: Measurement


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


def embed(texts: list[str], key: str = "minilm-l6", batch_size: int = 64, int8: bool = False
          ) -> tuple[np.ndarray, registry.Loaded]:
    """Sentence embeddings on PyTorch (mean pooled, L2-normalised), shape (len(texts), dim).

    Args:
        texts: already prepared texts.
        key: catalog key of a text encoder.
        batch_size: texts per forward pass.
        int8: use the dynamically quantised encoder.

    Returns:
        The embeddings and the Loaded encoder (for its measurement fields).
    """
    loaded = registry.load(key, int8=int8)
    return encode_with(loaded.model, texts, batch_size), loaded


def classify(texts: list[str], key: str, batch_size: int = 32, int8: bool = False,
             encoder: tuple[registry.Loaded, Any] | None = None) -> ClassificationResult:
    """Classify prepared texts with a sentiment model from the catalog.

    Args:
        texts: output of :func:`prepare_texts`.
        key: ``distilbert-sst2``, ``minilm-sentiment`` or another sentiment spec.
        batch_size: texts per forward pass.
        int8: run the dynamically quantised (int8 linear layers) variant.
        encoder: for a head on a sentence encoder, that encoder already loaded on an engine, and the engine
            choice (its ``engine`` and ``note``), from :func:`core.engines.load_encoder`; None: PyTorch.
            Classifiers such as DistilBERT run on PyTorch.

    Returns:
        ClassificationResult with one Prediction per text; ``measurement.engine`` says what ran it.
    """
    import torch

    loaded = registry.load(key)
    if int8 and not isinstance(loaded.model, EmbeddingClassifier):
        loaded = registry.load(key, int8=True)
    model = loaded.model
    if isinstance(model, EmbeddingClassifier):
        encoder_loaded, choice = encoder or (registry.load(model.head.encoder, int8=int8), None)
        runner = encoder_loaded.model
        notes = _token_note(runner.tokenizer, texts, runner.max_length) + ([choice.note] if choice and choice.note else [])
        with measured() as timing:
            probs = model.head.predict_proba(encode_with(runner, texts, batch_size))
        labels = model.head.labels
        load_s = sum(s for s in (loaded.load_s, encoder_loaded.load_s) if s is not None) or None
        measurement = loaded.measurement(timing.seconds, timing.peak_mb, load_s, engine=choice.engine if choice else None)
        measurement.source = encoder_loaded.resolution.source
        measurement.model_id = encoder_loaded.spec.hub_id or encoder_loaded.spec.key
    else:
        notes = _token_note(model.tokenizer, texts, model.max_length)
        device = choose_device().device

        def scores(chunk: list[str]) -> np.ndarray:
            batch = model.tokenizer(chunk, padding=True, truncation=True, max_length=model.max_length,
                                    return_tensors="pt").to(device)
            return torch.softmax(model.model(**batch).logits.float(), dim=-1).cpu().numpy()

        with measured() as timing, torch.inference_mode():
            probs = in_length_order(texts, batch_size, scores)
        labels = model.labels
        measurement = loaded.measurement(timing.seconds, timing.peak_mb)
    best = probs.argmax(axis=1)
    predictions = [Prediction(t, labels[i], float(probs[row, i])) for row, (t, i) in enumerate(zip(texts, best))]
    measurement.extra["texts_per_s"] = len(texts) / max(timing.seconds, 1e-9)
    if int8:  # the device label names the number format: int8 here, not the float32 of the device choice
        measurement.model += "@int8"
        device = measurement.device
        measurement.device = device.replace("float32", "int8") if "float32" in device else f"{device} · int8"
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


def compare_int8(texts: list[str], key: str) -> Int8Comparison:
    """Classify with the int8 variant and the float model, both on PyTorch, and measure how far their answers differ."""
    float32 = classify(texts, key)
    int8 = classify(texts, key, int8=True)
    pairs = list(zip(int8.predictions, float32.predictions))
    agreement = sum(a.label == b.label for a, b in pairs) / len(pairs)
    change = max((abs(a.score - b.score) for a, b in pairs if a.label == b.label), default=0.0)
    return Int8Comparison(int8, float32, agreement, change)


# --- generation -----------------------------------------------------------------------------------
PROMPT_EXAMPLES = {
    "Haiku": "Write a haiku about autumn rain.",
    "Explain": "Explain in two sentences what a neural network is.",
    "Story": "Once upon a time, in a city made of glass,",
}
# Defaults of the repetition controls; their effect on PROMPT_EXAMPLES is a row of bench/text.py.
REPETITION_PENALTY, NO_REPEAT_NGRAM_SIZE = 1.1, 4


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding controls. ``temperature`` 0 means greedy decoding.

    ``repetition_penalty`` (1 = off) divides the positive scores (multiplies the negative ones) of every
    token already in the prompt or the text so far; ``no_repeat_ngram_size`` (0 = off) forbids any
    sequence of that many tokens from occurring twice. Both follow transformers' ``generate``.
    """

    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    repetition_penalty: float = REPETITION_PENALTY
    no_repeat_ngram_size: int = NO_REPEAT_NGRAM_SIZE


@dataclass
class GenerationResult:
    """The generated text and its measurement (tokens/s, time to first token)."""

    text: str
    new_tokens: int
    notes: list[str]
    measurement: Measurement


class RepetitionControl:
    """The repetition penalty and the no-repeat n-gram ban of :class:`GenerationSettings`, over the
    prompt and the tokens generated so far, with the semantics of transformers' logits processors."""

    def __init__(self, settings: GenerationSettings, prompt_ids: Sequence[int]) -> None:
        self.penalty, self.n = settings.repetition_penalty, settings.no_repeat_ngram_size
        self.ids: list[int] = []
        self.seen: set[int] = set()
        self.followers: dict[tuple[int, ...], set[int]] = {}  # (n-1) tokens -> tokens that followed them
        for token in prompt_ids:
            self.add(token)

    def add(self, token: int) -> None:
        """Record the next token of the sequence."""
        self.ids.append(token)
        self.seen.add(token)
        if self.n > 0 and len(self.ids) >= self.n:
            gram = self.ids[-self.n:]
            self.followers.setdefault(tuple(gram[:-1]), set()).add(gram[-1])

    def apply(self, logits):
        """Scores for the next token, shape (1, vocab), with the penalty and the ban applied."""
        import torch

        logits = logits.float().clone()
        if self.penalty != 1.0 and self.seen:
            index = torch.tensor(sorted(self.seen), device=logits.device).unsqueeze(0)
            scores = logits.gather(-1, index)
            logits.scatter_(-1, index, torch.where(scores < 0, scores * self.penalty, scores / self.penalty))
        if self.n > 0 and len(self.ids) >= self.n - 1:
            banned = self.followers.get(tuple(self.ids[len(self.ids) - self.n + 1:]), ())
            if banned:
                logits[0, sorted(banned)] = float("-inf")
        return logits


def _pick_next(logits, settings: GenerationSettings, generator):
    import torch

    if settings.temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(dim=-1) - sorted_probs < settings.top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)


class TextStream:
    """Iterate to receive generated text piece by piece; ``result`` is set when iteration ends.

    The person's wait is counted from when the stream is made (make it on the click): a one-time
    conversion of the weights (:meth:`prepare`) and the model's load are part of the time to the first token.
    """

    def __init__(self, key: str, prompt: str, settings: GenerationSettings, stop_at_eos: bool = True) -> None:
        self.key, self.prompt, self.settings, self.stop_at_eos = key, prompt, settings, stop_at_eos
        self.result: GenerationResult | None = None
        self.started = time.perf_counter()
        self.conversion_s: float | None = None

    def prepare(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Convert the model's packaged weights if they need it (once per machine), timing the wait.

        Args:
            progress: called with a line of text at each stage of the conversion.
        """
        if self.conversion_s is None and needs_conversion(self.key):
            start = time.perf_counter()
            convert_packaged_weights(self.key, progress)
            self.conversion_s = time.perf_counter() - start

    def _encode(self, lm: CausalLM, notes: list[str]):
        # verbose=False: a prompt longer than the tokenizer's maximum is cut below, keeping its end (truncation
        # would keep its start), so transformers' "sequence length is longer" warning would only be log noise.
        if lm.chat:
            ids = lm.tokenizer.apply_chat_template(
                [{"role": "user", "content": self.prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True,
                tokenizer_kwargs={"verbose": False},
            )["input_ids"]
        else:
            ids = lm.tokenizer(self.prompt, return_tensors="pt", verbose=False)["input_ids"]
        room = lm.context - self.settings.max_new_tokens
        if ids.shape[1] > room:
            notes.append(f"The prompt has {ids.shape[1]} tokens; only its last {room} fit the model's context with the requested new tokens.")
            ids = ids[:, -room:]
        return ids

    def _measurement(self, loaded: registry.Loaded, seconds: float, peak_mb: float, tokens: int,
                     first_token_at: float, notes: list[str]) -> Measurement:
        """Load includes a conversion made for this request; time to first token runs from the click."""
        load_s = loaded.load_s
        extra = {"tokens": tokens, "tokens_per_s": tokens / max(seconds, 1e-9),
                 "time_to_first_token_s": first_token_at - self.started}
        if self.conversion_s is not None:
            load_s = (load_s or 0.0) + self.conversion_s
            extra["conversion_s"] = self.conversion_s
            notes.append(
                f"First use on this machine: the packaged GGUF weights were converted to safetensors first, which "
                f"took {self.conversion_s:.1f} s of this request (once per machine). Load and time to first token include it."
            )
        return loaded.measurement(seconds, peak_mb, load_s=load_s, **extra)

    def __iter__(self) -> Iterator[str]:
        import torch

        self.prepare()
        loaded = registry.load(self.key)
        lm: CausalLM = loaded.model
        device = choose_device().device
        notes: list[str] = []
        ids = self._encode(lm, notes).to(device)
        eos = lm.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        generator = torch.Generator(device=device).manual_seed(self.settings.seed)
        repetition = RepetitionControl(self.settings, ids[0].tolist())
        new_ids: list[int] = []
        shown = ""
        first_token_at = 0.0
        with PeakTracker() as tracker, torch.inference_mode():
            start = time.perf_counter()
            out = lm.model(input_ids=ids, use_cache=True)
            for step in range(self.settings.max_new_tokens):
                next_id = _pick_next(repetition.apply(out.logits[:, -1, :]), self.settings, generator)
                token = int(next_id)
                if step == 0:
                    first_token_at = time.perf_counter()
                if self.stop_at_eos and token in eos_ids:
                    break
                new_ids.append(token)
                repetition.add(token)
                text = lm.tokenizer.decode(new_ids, skip_special_tokens=True)
                if not text.endswith("\ufffd") and len(text) > len(shown):
                    yield text[len(shown):]
                    shown = text
                if step + 1 < self.settings.max_new_tokens:
                    out = lm.model(input_ids=next_id.view(1, 1), cache=out.cache, use_cache=True)
            seconds = time.perf_counter() - start
        final = lm.tokenizer.decode(new_ids, skip_special_tokens=True)
        if len(final) > len(shown) and final.startswith(shown):
            yield final[len(shown):]
        measurement = self._measurement(loaded, seconds, tracker.peak_mb, len(new_ids), first_token_at, notes)
        self.result = GenerationResult(final, len(new_ids), notes, measurement)


def generate(key: str, prompt: str, settings: GenerationSettings = GenerationSettings()) -> GenerationResult:
    """Generate without streaming; returns the finished GenerationResult."""
    stream = TextStream(key, prompt, settings)
    for _ in stream:
        pass
    return stream.result
