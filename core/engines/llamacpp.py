"""llama.cpp (llama-cpp-python) for GGUF causal language models: reads the packaged file as it is.

No conversion and no float32 copy: the quantised weights are memory-mapped, so loading takes a fraction of a
second and decoding reads ~4.5 bits per weight. Nothing here imports torch or transformers: the GGUF carries
its tokenizer and chat template (rendered with jinja2 as transformers does).

One ``Llama`` holds one KV cache, so calls on a runner are serialised by its lock. The app loads it in a runner
process of its own (:mod:`core.engines.runner`), so a crash in llama.cpp ends one request, not the server.
"""
from __future__ import annotations

import os
import threading
import weakref
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np

from core.cpu import llamacpp_repack, this_cpu
from core.engines import LLAMACPP
from core.engines.generate import log_softmax, sample_loop

MAX_CONTEXT = 2048  # the KV cache is allocated up front: 2048 tokens of SmolLM2-135M take ~47 MB


class LlamaCppLM:
    """A llama.cpp model as an engine runner (see :class:`core.engines.generate.EngineLM`)."""

    engine = LLAMACPP

    def __init__(self, llm, chat: bool, threads: int, note: str = "") -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        meta = llm.metadata
        trained = meta.get(f"{meta.get('general.architecture', 'llama')}.context_length")
        self.llm, self.context = llm, min(llm.n_ctx(), int(trained or llm.n_ctx()))
        template = meta.get("tokenizer.chat_template")
        self.chat = chat and template is not None
        token = lambda key: llm.detokenize([int(meta[key])], special=True).decode("utf-8", "replace") if key in meta else ""
        self.formatter = (Jinja2ChatFormatter(template, eos_token=token("tokenizer.ggml.eos_token_id"),
                                              bos_token=token("tokenizer.ggml.bos_token_id")) if self.chat else None)
        self.eos_ids = {llm.token_eos()} | {int(meta[k]) for k in ("tokenizer.ggml.eot_token_id",) if k in meta}
        kind = meta.get("general.file_type_name") or _file_type(meta)
        self.label = f"cpu · llama.cpp {kind} · {threads} thread(s)" + (f" · {note}" if note else "")
        self.size_mb = os.path.getsize(llm.model_path) / 2**20  # memory-mapped weights; the KV cache adds ~47 MB
        self.lock = threading.Lock()

    def prompt_ids(self, prompt: str) -> list[int]:
        if self.formatter is None:
            return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        rendered = self.formatter(messages=[{"role": "user", "content": prompt}])
        return self.llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def decode(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def _last_logits(self) -> np.ndarray:
        import llama_cpp

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.llm.n_vocab(),))

    def _run(self, tokens: Sequence[int], reset: bool = False) -> np.ndarray:
        if reset:
            self.llm.reset()
        self.llm.eval(list(tokens))
        return self._last_logits()

    def generate_ids(self, ids: Sequence[int], settings) -> Iterator[int]:
        with self.lock:
            yield from sample_loop(lambda: self._run(ids, reset=True), lambda token: self._run([token]), ids, settings)

    def forced_argmax(self, ids: Sequence[int], start: int) -> list[int]:
        with self.lock:
            predicted = [int(np.argmax(self._run(ids[:start], reset=True)))]
            predicted += [int(np.argmax(self._run([token]))) for token in ids[start:-1]]
        return predicted

    def chat_ids(self, messages: list[dict]) -> list[int] | None:
        if self.formatter is None:
            return None
        rendered = self.formatter(messages=messages)
        return self.llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def token_ids(self, texts: Sequence[str], add_special: bool = False) -> list[list[int]]:
        return [self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=False) for text in texts]

    def score_continuations(self, ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        """Multiple-choice scoring. The KV cache keeps the longest prefix shared with the last call, so prompts
        that open alike (the same labelled examples before each held-out item) run that part once."""
        ids = list(ids)
        with self.lock:
            cached = self.llm.input_ids[: self.llm.n_tokens].tolist()
            common = 0
            while common < min(len(cached), len(ids) - 1) and cached[common] == ids[common]:
                common += 1
            self.llm.n_tokens = common  # eval drops the cache past this point
            first = log_softmax(self._run(ids[common:]))
            scores = []
            for continuation in continuations:
                self.llm.n_tokens = len(ids)
                total = first[continuation[0]]
                for token, following in zip(continuation, continuation[1:]):
                    total += log_softmax(self._run([token]))[following]
                scores.append(float(total))
        return scores


_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 15: "Q4_K_M", 17: "Q5_K_M", 18: "Q6_K"}


def _file_type(meta: dict) -> str:
    """The GGUF's quantisation name from its ``general.file_type`` number."""
    number = meta.get("general.file_type")
    return _FILE_TYPES.get(int(number), f"type {number}") if number is not None else "GGUF"


@contextmanager
def extra_buffers(allowed: bool):
    """Load models inside this block with llama.cpp's extra CPU buffer types (weight repacking) on or off.

    llama-cpp-python's ``Llama`` takes no ``use_extra_bufts`` argument: it starts from
    ``llama_model_default_params()``, so that function is wrapped while the block runs. Process-wide: use it where
    one model loads at a time (a runner process, a server's start).
    """
    import llama_cpp.llama_cpp as native

    if allowed:
        yield
        return
    original = native.llama_model_default_params

    def without_repack():
        params = original()
        params.use_extra_bufts = False
        return params

    native.llama_model_default_params = without_repack
    try:
        yield
    finally:
        native.llama_model_default_params = original


def load(path: str, chat: bool, threads: int, repack: bool | None = None) -> LlamaCppLM:
    """Open a GGUF file with llama.cpp on the CPU.

    Args:
        path: the .gguf file.
        chat: use the chat template stored in the file.
        threads: threads for both prompt processing and decoding.
        repack: let llama.cpp repack weights for this CPU's kernels; None decides from the CPU's flags
            (:func:`core.cpu.llamacpp_repack`: off where AMX is, whose repack crashes).
    """
    from llama_cpp import Llama

    allowed, why = llamacpp_repack(this_cpu())
    if repack is not None:
        allowed, why = repack, "" if repack else "weight repack off"
    # Flash attention: ~9% more tokens/s here (81 -> 88, alternating pairs) at the same agreement with float32.
    with extra_buffers(allowed):
        llm = Llama(path, n_ctx=MAX_CONTEXT, n_threads=threads, n_threads_batch=threads, flash_attn=True, verbose=False)
    runner = LlamaCppLM(llm, chat, threads, why)
    weakref.finalize(runner, llm.close)  # frees it before interpreter shutdown tears down llama_cpp's module globals
    runner._run(runner.prompt_ids("warm up"), reset=True)  # touches every weight now, not on the first request
    return runner
