"""CTranslate2 int8 for causal language models: the wheels-only fast engine (faster-whisper already needs it).

The model is converted once per machine into CTranslate2's format with int8 weights (:func:`core.prepare.prepare_once`),
from a transformers folder: the Hub's weights, a local folder, or the packaged GGUF after its one-time conversion
to safetensors (:func:`core.textgen.convert_packaged_weights`).
"""
from __future__ import annotations

import hashlib
import json
import queue
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from core.catalog import ModelSpec
from core.config import get_settings
from core.engines import CTRANSLATE2
from core.prepare import prepare_once
from core.progress import OnProgress, Progress, ignore
from core.registry import Resolution

QUANTIZATION = "int8"


def _source(spec: ModelSpec, resolution: Resolution, on_progress: OnProgress) -> str:
    """A transformers folder or Hub id holding the model's weights (packaged GGUF is converted first)."""
    if resolution.location.endswith(".gguf"):
        from core.textgen import convert_packaged_weights

        return str(convert_packaged_weights(spec, resolution, on_progress))
    return resolution.location


def model_folder(spec: ModelSpec, source: str) -> Path:
    """Where ``spec``'s CTranslate2 model converted from ``source`` is cached."""
    import ctranslate2

    digest = hashlib.sha256(f"{source}|{ctranslate2.__version__}|{QUANTIZATION}".encode()).hexdigest()[:12]
    return get_settings().converted_dir / "ct2" / f"{spec.key}-{QUANTIZATION}-{digest}"


def needs_conversion(spec: ModelSpec, resolution: Resolution) -> bool:
    """Whether loading ``spec`` from ``resolution`` converts it first (its CTranslate2 folder is not there yet)."""
    if resolution.location.endswith(".gguf"):
        from core.textgen import gguf_cache_folder

        return not model_folder(spec, str(gguf_cache_folder(spec))).exists()
    return not model_folder(spec, resolution.location).exists()


def _convert(source: str, offline: bool, folder: Path) -> None:
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoTokenizer

    # force: the folder exists (prepare_once made it); the converter empties it, so the tokenizer goes in after.
    TransformersConverter(source, low_cpu_mem_usage=True).convert(str(folder), quantization=QUANTIZATION, force=True)
    AutoTokenizer.from_pretrained(source, local_files_only=offline).save_pretrained(folder)


class FolderTokenizer:
    """The tokenizer saved beside a converted model, read with the ``tokenizers`` library and jinja2 alone, so
    that loading a converted model imports neither transformers nor torch. Its chat template is rendered as
    transformers renders it (a sandboxed jinja2 environment, blocks trimmed), then tokenized without adding
    special tokens (tests/unit/test_engines.py checks both against transformers)."""

    def __init__(self, folder: Path) -> None:
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        text_of = lambda value: value.get("content") if isinstance(value, dict) else value  # AddedToken as a dict
        self.special = {name: text_of(config[name]) for name in ("bos_token", "eos_token", "unk_token", "pad_token")
                        if text_of(config.get(name))}
        eos = self.special.get("eos_token")
        self.eos_token_id = self.backend.token_to_id(eos) if eos else None
        self.model_max_length = int(config.get("model_max_length") or 0)
        template_file = folder / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.exists() else config.get("chat_template")
        self.chat_template = None
        if isinstance(template, str):
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
            env.globals["raise_exception"] = _raise
            self.chat_template = env.from_string(template)

    def ids(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text``; ``special``: add the tokenizer's own special tokens (a BOS, say)."""
        return self.backend.encode(text, add_special_tokens=special).ids

    def chat_ids(self, prompt: str) -> list[int]:
        """Token ids of ``prompt`` as one user message in the chat template, ready for the assistant's answer."""
        rendered = self.chat_template.render(messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             **self.special)
        return self.ids(rendered, special=False)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.backend.id_to_token(int(i)) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=True)


def _raise(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


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
        return self.tokenizer.chat_ids(prompt) if self.chat else self.tokenizer.ids(prompt)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def generate_ids(self, ids: Sequence[int], settings) -> Iterator[int]:
        """Stream token ids: ``generate_batch`` runs on a helper thread and hands each step to this generator.

        Not ``generate_tokens``: on 2 cores its asynchronous worker decoded 2-3x slower than the same call made
        synchronously with a per-step callback (bench/engines.py).
        """
        import ctranslate2

        greedy = settings.temperature <= 0
        with self._seed_lock:  # the seed is process-wide in CTranslate2
            ctranslate2.set_random_seed(settings.seed)
        steps: queue.SimpleQueue = queue.SimpleQueue()
        stop = threading.Event()

        def run() -> None:
            try:
                self.generator.generate_batch(
                    [self.tokenizer.tokens(ids)], max_length=settings.max_new_tokens,
                    sampling_topk=1 if greedy else 0, sampling_topp=1.0 if greedy else settings.top_p,
                    sampling_temperature=1.0 if greedy else settings.temperature, end_token=[],
                    repetition_penalty=settings.repetition_penalty, no_repeat_ngram_size=settings.no_repeat_ngram_size,
                    include_prompt_in_result=False, callback=lambda step: steps.put(step.token_id) or stop.is_set())
                steps.put(None)
            except BaseException as err:  # raised again in the reader's thread
                steps.put(err)

        worker = threading.Thread(target=run, name="ct2-generate", daemon=True)
        worker.start()
        try:
            while (item := steps.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # a reader that stops early ends the generation at its next step,
            worker.join()  # and its model turn ends only when the generation has

    def forced_argmax(self, ids: Sequence[int], start: int) -> list[int]:
        logits = np.asarray(self.generator.forward_batch([self.tokenizer.tokens(ids)]))[0]
        return logits[start - 1 : len(ids) - 1].argmax(axis=-1).tolist()

    def chat_ids(self, messages: list[dict]) -> list[int] | None:
        template = self.tokenizer.chat_template
        if template is None:
            return None
        return self.tokenizer.ids(template.render(messages=messages, add_generation_prompt=True,
                                                  **self.tokenizer.special), special=False)

    def token_ids(self, texts: Sequence[str], add_special: bool = False) -> list[list[int]]:
        return [self.tokenizer.ids(text, special=add_special) for text in texts]

    def score_continuations(self, ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        """One batch: the prompt with each continuation (``score_batch`` scores every token after the first)."""
        batch = [self.tokenizer.tokens(list(ids) + list(c)) for c in continuations]
        results = self.generator.score_batch(batch, max_input_length=0)
        return [float(sum(r.log_probs[len(r.log_probs) - len(c):])) for r, c in zip(results, continuations)]


def load(spec: ModelSpec, resolution: Resolution, threads: int, on_progress: OnProgress = ignore) -> CT2LM:
    """Convert ``spec``'s weights to CTranslate2 int8 once (cached), then load them on the CPU.

    Args:
        spec: a causal LM spec.
        resolution: where its weights are.
        threads: the app's thread count; CTranslate2 gets half of it (at least 1): on 2 cores SmolLM2-135M
            streamed 31 tokens/s on 1 thread and 18 on 2 (its per-step work is too small to split).
        on_progress: told a line of text at each stage of a first conversion.
    """
    import ctranslate2

    source = _source(spec, resolution, on_progress)
    folder = model_folder(spec, source)
    if not folder.exists():
        on_progress(Progress.note(f"Converting {spec.title} to CTranslate2 {QUANTIZATION} (once per machine) ..."))
    prepare_once(folder, lambda tmp: _convert(source, resolution.local_files_only, tmp), on_progress, what="CTranslate2 conversion")
    threads = max(1, threads // 2)
    generator = ctranslate2.Generator(str(folder), device="cpu", compute_type=QUANTIZATION, intra_threads=threads)
    tokenizer = FolderTokenizer(folder)
    context = tokenizer.model_max_length if 0 < tokenizer.model_max_length < 1_000_000 else 2048
    chat = bool(spec.options.get("chat")) and tokenizer.chat_template is not None
    return CT2LM(generator, tokenizer, chat, context, threads, (folder / "model.bin").stat().st_size / 2**20)
