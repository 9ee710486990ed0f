"""Text generation as a family: its settings and result, the repetition controls, and loading a causal LM.

The one decode loop that streams text on every engine (PyTorch included) is :class:`core.engines.generate.EngineStream`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from core.catalog import ModelSpec
from core.config import get_settings
from core.device import choose_device
from core.measure import Measurement
from core.prepare import prepare_once
from core.progress import OnProgress, Progress, ignore
from core.registry import Resolution
from core.text import from_pretrained, warm_up

GGUF_MARKER = "converted.json"  # inside a converted folder: where from, how long it took

# --- settings and result -----------------------------------------------------------------------------------
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
    """The generated text and its measurement (tokens/s, time to first token), here or from a hosted chat model.

    Attributes:
        prompt_tokens: what a hosted endpoint counted (or, where it said nothing, an estimate); None here.
    """

    text: str
    new_tokens: int
    notes: list[str]
    measurement: Measurement
    prompt_tokens: int | None = None


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


@dataclass
class CausalLM:
    """A causal language model with its tokenizer; ``chat`` uses the tokenizer's chat template."""

    tokenizer: Any
    model: Any
    chat: bool = False
    context: int = 1024


def gguf_cache_folder(spec: ModelSpec) -> Path:
    """Where packaged GGUF weights are converted to safetensors, once."""
    return get_settings().converted_dir / spec.key


def needs_conversion(spec: ModelSpec, resolution: Resolution | None) -> bool:
    """True when loading from ``resolution`` would first convert packaged GGUF weights (tens of seconds)."""
    return (resolution is not None and resolution.source == "package" and resolution.location.endswith(".gguf")
            and not gguf_cache_folder(spec).exists())


def convert_gguf(spec: ModelSpec, gguf_path: Path, on_progress: OnProgress = ignore) -> Path:
    """Dequantise a GGUF file into a safetensors folder in the cache, once per machine.

    Concurrent callers (sessions, server processes) share one conversion through
    :func:`core.prepare.prepare_once`: the others wait and are told so through ``on_progress``.

    Args:
        spec: the model's spec.
        gguf_path: the packaged .gguf file.
        on_progress: told a line of text at each stage.

    Returns:
        The converted folder.
    """
    def build(folder: Path) -> None:
        import json

        from transformers import AutoModelForCausalLM, AutoTokenizer

        start = time.perf_counter()
        on_progress(Progress.note(f"Reading the tokenizer from {gguf_path.name} ..."))
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        on_progress(Progress.note("Dequantising the GGUF weights to float32 (tens of seconds, once per machine) ..."))
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, attn_implementation="eager")
        # The tensors are already float32; drop the GGUF quantizer marks so transformers saves them.
        model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        on_progress(Progress.note("Saving safetensors ..."))
        tokenizer.save_pretrained(folder)
        model.save_pretrained(folder)
        record = {"from": str(gguf_path), "seconds": round(time.perf_counter() - start, 1)}
        (folder / GGUF_MARKER).write_text(json.dumps(record) + "\n")
        on_progress(Progress.note(f"Converted in {record['seconds']} s."))

    return prepare_once(gguf_cache_folder(spec), build, on_progress)


def convert_packaged_weights(spec: ModelSpec, resolution: Resolution,
                             on_progress: OnProgress = ignore) -> Path:
    """Convert packaged GGUF weights at ``resolution`` now, reporting each stage (see :func:`needs_conversion`)."""
    return convert_gguf(spec, Path(resolution.location), on_progress)


def load_causal_lm(spec: ModelSpec, resolution: Resolution) -> CausalLM:
    """Load a causal LM; packaged GGUF weights are converted to safetensors first (once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    choice = choose_device()
    if resolution.source == "package" and resolution.location.endswith(".gguf"):
        folder = convert_gguf(spec, Path(resolution.location))
        resolution = Resolution("package", str(folder))
    tokenizer = from_pretrained(AutoTokenizer, resolution)
    model = from_pretrained(AutoModelForCausalLM, resolution, dtype=choice.dtype).to(choice.device).eval()
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 1024)
    warm_up(tokenizer, model)
    return CausalLM(tokenizer, model, bool(spec.options.get("chat")) and tokenizer.chat_template is not None, int(context))
