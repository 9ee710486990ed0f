"""CTranslate2 int8 for causal language models: the wheels-only fast engine (faster-whisper already needs it).

The model is converted once per machine into CTranslate2's format with int8 weights (:func:`core.prepare.prepare_once`),
from a transformers folder: the Hub's weights, a local folder, or the packaged GGUF after its one-time conversion
to safetensors (:func:`core.text.convert_packaged_weights`).
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from core.catalog import ModelSpec
from core.config import get_settings
from core.engines import CTRANSLATE2
from core.prepare import prepare_once
from core.registry import Resolution

QUANTIZATION = "int8"


def _source(spec: ModelSpec, resolution: Resolution, progress: Callable[[str], None]) -> str:
    """A transformers folder or Hub id holding the model's weights (packaged GGUF is converted first)."""
    if resolution.location.endswith(".gguf"):
        from core.text import convert_packaged_weights

        return str(convert_packaged_weights(spec.key, progress))
    return resolution.location


def model_folder(spec: ModelSpec, source: str) -> Path:
    """Where ``spec``'s CTranslate2 model converted from ``source`` is cached."""
    import ctranslate2

    digest = hashlib.sha256(f"{source}|{ctranslate2.__version__}|{QUANTIZATION}".encode()).hexdigest()[:12]
    return get_settings().converted_dir / "ct2" / f"{spec.key}-{QUANTIZATION}-{digest}"


def needs_conversion(spec: ModelSpec, resolution: Resolution) -> bool:
    """Whether loading ``spec`` from ``resolution`` converts it first (its CTranslate2 folder is not there yet)."""
    if resolution.location.endswith(".gguf"):
        from core.text import gguf_cache_folder

        return not model_folder(spec, str(gguf_cache_folder(spec))).exists()
    return not model_folder(spec, resolution.location).exists()


def _convert(source: str, offline: bool, folder: Path) -> None:
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoTokenizer

    # force: the folder exists (prepare_once made it); the converter empties it, so the tokenizer goes in after.
    TransformersConverter(source, low_cpu_mem_usage=True).convert(str(folder), quantization=QUANTIZATION, force=True)
    AutoTokenizer.from_pretrained(source, local_files_only=offline).save_pretrained(folder)


class CT2LM:
    """A CTranslate2 generator as an engine runner (see :class:`core.engines.generate.EngineLM`)."""

    engine = CTRANSLATE2

    def __init__(self, generator, tokenizer, chat: bool, context: int, threads: int, size_mb: float = 0.0) -> None:
        self.generator, self.tokenizer, self.chat, self.context, self.size_mb = generator, tokenizer, chat, context, size_mb
        eos = tokenizer.eos_token_id
        self.eos_ids = {eos} if eos is not None else set()
        self.label = f"cpu · CTranslate2 {QUANTIZATION} · {threads} thread(s)"
        self._seed_lock = threading.Lock()

    def prompt_ids(self, prompt: str) -> list[int]:
        if self.chat:
            return list(self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                           return_dict=True)["input_ids"])
        return list(self.tokenizer(prompt)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def generate_ids(self, ids: Sequence[int], settings) -> Iterator[int]:
        import ctranslate2

        greedy = settings.temperature <= 0
        with self._seed_lock:  # the seed is process-wide in CTranslate2
            ctranslate2.set_random_seed(settings.seed)
        steps = self.generator.generate_tokens(
            self.tokenizer.convert_ids_to_tokens(list(ids)), max_length=settings.max_new_tokens,
            sampling_topk=1 if greedy else 0, sampling_topp=1.0 if greedy else settings.top_p,
            sampling_temperature=1.0 if greedy else settings.temperature, end_token=[],
            repetition_penalty=settings.repetition_penalty, no_repeat_ngram_size=settings.no_repeat_ngram_size,
        )
        for step in steps:
            yield step.token_id

    def forced_argmax(self, ids: Sequence[int], start: int) -> list[int]:
        logits = np.asarray(self.generator.forward_batch([self.tokenizer.convert_ids_to_tokens(list(ids))]))[0]
        return logits[start - 1 : len(ids) - 1].argmax(axis=-1).tolist()


def load(spec: ModelSpec, resolution: Resolution, threads: int, progress: Callable[[str], None] = lambda _: None) -> CT2LM:
    """Convert ``spec``'s weights to CTranslate2 int8 once (cached), then load them on the CPU.

    Args:
        spec: a causal LM spec.
        resolution: where its weights are.
        threads: intra-op threads.
        progress: called with a line of text at each stage of a first conversion.
    """
    import ctranslate2
    from transformers import AutoTokenizer

    source = _source(spec, resolution, progress)
    folder = model_folder(spec, source)
    if not folder.exists():
        progress(f"Converting {spec.title} to CTranslate2 {QUANTIZATION} (once per machine) ...")
    prepare_once(folder, lambda tmp: _convert(source, resolution.local_files_only, tmp), progress, what="CTranslate2 conversion")
    generator = ctranslate2.Generator(str(folder), device="cpu", compute_type=QUANTIZATION, intra_threads=threads)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    context = int(getattr(tokenizer, "model_max_length", 0) or 0)
    context = context if 0 < context < 1_000_000 else 2048
    chat = bool(spec.options.get("chat")) and tokenizer.chat_template is not None
    return CT2LM(generator, tokenizer, chat, context, threads, (folder / "model.bin").stat().st_size / 2**20)
