"""Text generation on any engine: one sampler, one streaming loop, and the agreement of an engine with float32.

Every generation engine's runner offers the same small surface (see :class:`EngineLM`), so the loop that
streams text, truncates a long prompt and measures tokens/s is written once here, and comparing two engines
is comparing two runners.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from core import registry
from core.measure import PeakMB, PeakTracker


class EngineLM(Protocol):
    """What a generation engine's runner offers.

    Attributes:
        engine: the engine name.
        context: most tokens (prompt + new) the runner reads.
        eos_ids: tokens that end an answer.
        label: device label for measurements, e.g. ``cpu · llama.cpp Q4_1 · 2 thread(s)``.
    """

    engine: str
    context: int
    eos_ids: set[int]
    label: str

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a user prompt (inside the chat template for chat models)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated token ids (special tokens dropped)."""

    def generate_ids(self, ids: Sequence[int], settings) -> Iterator[int]:
        """Yield ``settings.max_new_tokens`` sampled token ids after ``ids`` (not stopping at end-of-text)."""

    def forced_argmax(self, ids: Sequence[int], start: int) -> list[int]:
        """Teacher forcing: the most likely next token at each position from ``start`` on, given the true prefix."""

    def chat_ids(self, messages: list[dict]) -> list[int] | None:
        """Token ids of a conversation in the model's chat template, ready for the assistant's answer; None when
        the model has no chat template."""

    def token_ids(self, texts: Sequence[str], add_special: bool = False) -> list[list[int]]:
        """Token ids of plain texts, no chat template; ``add_special``: the tokenizer's own start tokens (a BOS)."""

    def score_continuations(self, ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        """Per continuation, the sum of its tokens' log-probabilities after ``ids`` (multiple-choice scoring)."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities from one row of logits (float64, numerically stable)."""
    scores = np.asarray(logits, dtype=np.float64)
    shifted = scores - scores.max()
    return shifted - np.log(np.exp(shifted).sum())


def pick_next(logits: np.ndarray, settings, rng: np.random.Generator, repetition=None) -> int:
    """Choose the next token from one row of logits: greedy at temperature 0, else temperature + top-p sampling.

    Args:
        logits: shape (vocab,).
        settings: a :class:`core.textgen.GenerationSettings` (temperature, top_p).
        rng: the random generator (seeded by the caller).
        repetition: a :class:`core.textgen.RepetitionControl` over the sequence so far, applied first (None: off).
    """
    if repetition is not None:
        logits = penalised(logits, repetition)
    if settings.temperature <= 0:
        return int(np.argmax(logits))
    scaled = np.asarray(logits, dtype=np.float64) / settings.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if settings.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        ranked = probs[order]
        keep = np.cumsum(ranked) - ranked < settings.top_p
        probs = np.zeros_like(probs)
        probs[order[keep]] = ranked[keep]
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def penalised(logits: np.ndarray, repetition) -> np.ndarray:
    """``logits`` with a RepetitionControl's penalty and n-gram ban applied, in numpy (engines without torch)."""
    logits = np.array(logits, dtype=np.float32)
    if repetition.penalty != 1.0 and repetition.seen:
        index = np.fromiter(repetition.seen, dtype=np.int64)
        scores = logits[index]
        logits[index] = np.where(scores < 0, scores * repetition.penalty, scores / repetition.penalty)
    n = repetition.n
    if n > 0 and len(repetition.ids) >= n - 1:
        banned = repetition.followers.get(tuple(repetition.ids[len(repetition.ids) - n + 1:]), ())
        if banned:
            logits[list(banned)] = -np.inf
    return logits


def sample_loop(first_logits: Callable[[], np.ndarray], step: Callable[[int], np.ndarray], ids: Sequence[int],
                settings) -> Iterator[int]:
    """The decode loop of engines that hand out logits: pick a token, feed it, repeat ``max_new_tokens`` times.

    Args:
        first_logits: runs the prompt, returns the logits of its last position.
        step: feeds one token, returns the logits after it.
        ids: the prompt's token ids (the repetition controls count them).
        settings: a :class:`core.textgen.GenerationSettings`.
    """
    from core.textgen import RepetitionControl

    rng = np.random.default_rng(settings.seed)
    repetition = RepetitionControl(settings, ids)
    logits = first_logits()
    for i in range(settings.max_new_tokens):
        token = pick_next(logits, settings, rng, repetition)
        repetition.add(token)
        yield token
        if i + 1 < settings.max_new_tokens:
            logits = step(token)


class EngineStream:
    """Iterate to receive generated text piece by piece from a loaded model on any engine (PyTorch included);
    ``result`` is set at the end. The one decode loop of the app: the page streams it with ``st.write_stream``.

    Args:
        loaded: from :func:`core.engines.load` (its ``model`` is an :class:`EngineLM`).
        prompt: the user's prompt.
        settings: a :class:`core.textgen.GenerationSettings`.
        stop_at_eos: end at end-of-text (False: exactly ``max_new_tokens``, as engine comparisons need).
        include_load: time to first token includes this model's load, when the click loaded it (a person's wait).
    """

    def __init__(self, loaded: registry.Loaded, prompt: str, settings, stop_at_eos: bool = True,
                 include_load: bool = True) -> None:
        self.loaded, self.prompt, self.settings, self.stop_at_eos = loaded, prompt, settings, stop_at_eos
        self.engine = loaded.model.engine
        self.waited_s = (loaded.load_s or 0.0) if include_load else 0.0
        self.result = None
        self.started = time.perf_counter()
        self.prompt_token_ids: list[int] = []
        self.token_ids: list[int] = []

    def __iter__(self) -> Iterator[str]:
        from core.textgen import GenerationResult

        loaded, notes = self.loaded, []
        lm: EngineLM = loaded.model
        restarted = getattr(lm, "take_restart_s", lambda: None)  # a runner started afresh (its last one died) is a load
        ids = lm.prompt_ids(self.prompt)
        restart_s = restarted() or 0.0  # before the clock starts
        room = lm.context - self.settings.max_new_tokens
        if len(ids) > room:
            notes.append(f"The prompt has {len(ids)} tokens; only its last {room} fit the model's context with the requested new tokens.")
            ids = ids[-room:]
        new_ids: list[int] = []
        shown, first_token_at = "", 0.0
        with PeakTracker() as tracker:
            start = time.perf_counter()
            tokens = lm.generate_ids(ids, self.settings)
            try:
                for step, token in enumerate(tokens):
                    if step == 0:
                        first_token_at = time.perf_counter()
                    if self.stop_at_eos and token in lm.eos_ids:
                        break
                    new_ids.append(token)
                    text = lm.decode(new_ids)
                    if not text.endswith("\ufffd") and len(text) > len(shown):
                        yield text[len(shown):]
                        shown = text
            finally:
                tokens.close()  # releases the runner for the next caller even when the reader stops early
            during = restarted() or 0.0
            seconds = time.perf_counter() - start - during
            restart_s += during
        self.prompt_token_ids, self.token_ids = list(ids), new_ids
        final = lm.decode(new_ids)
        if len(final) > len(shown) and final.startswith(shown):
            yield final[len(shown):]
        peak = tracker.peak_mb
        runner_peak = getattr(lm, "last_peak", None)  # an engine in its own process: its memory counts too
        if runner_peak is not None:
            peak = PeakMB(float(peak) + float(runner_peak), peak.start_mb + runner_peak.start_mb)
        converted_s = getattr(loaded, "conversion_s", 0.0) if self.waited_s else 0.0
        if converted_s:
            notes.append(
                f"First use on this machine: the packaged GGUF weights were converted to safetensors first, which "
                f"took {converted_s:.1f} s of this request (once per machine). Load and time to first token include it.")
        extra = {"conversion_s": converted_s} if converted_s else {}
        measurement = loaded.measurement(
            seconds, peak, load_s=restart_s or None, **extra, device=lm.label, engine=self.engine, tokens=len(new_ids),
            tokens_per_s=len(new_ids) / max(seconds, 1e-9),
            time_to_first_token_s=first_token_at - self.started + self.waited_s,
        )
        self.result = GenerationResult(final, len(new_ids), notes, measurement)


def complete(loaded: registry.Loaded, prompt: str, settings):
    """Generate without streaming (scripts, benchmarks); returns the finished :class:`core.textgen.GenerationResult`."""
    stream = EngineStream(loaded, prompt, settings)
    for _ in stream:
        pass
    return stream.result


# --- agreement with a reference engine (float32 PyTorch) ------------------------------------------------
@dataclass
class Agreement:
    """How closely an engine follows a reference engine on the same prompts.

    Attributes:
        first_difference: per prompt, the index of the first greedy token that differs (None: all equal).
        forced_agreement: share of positions where, given the reference's own greedy text as the prefix, the
            engine's most likely next token is the reference's (teacher forcing: one early difference does
            not count again at every later position).
        positions: positions compared by teacher forcing.
    """

    first_difference: list[int | None]
    forced_agreement: float
    positions: int

    def summary(self) -> str:
        """One line for pages and bench notes."""
        same = sum(d is None for d in self.first_difference)
        firsts = ", ".join("none" if d is None else f"token {d + 1}" for d in self.first_difference)
        return (f"next-token agreement {self.forced_agreement:.1%} over {self.positions} positions (teacher forced); "
                f"greedy text identical on {same} of {len(self.first_difference)} prompts; first differing token: {firsts}")


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first position where two token sequences differ (a length difference counts), None if equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def agreement(engine: EngineLM, reference: EngineLM, prompts: Sequence[str], new_tokens: int = 64) -> Agreement:
    """Greedy generation and teacher-forced next tokens of ``engine`` against ``reference``, on the same token ids.

    Args:
        engine, reference: two runners of the same model (same vocabulary).
        prompts: user prompts (the chat template is applied by the reference's tokenizer).
        new_tokens: greedy tokens generated per prompt.

    Returns:
        The Agreement.
    """
    from core.textgen import GenerationSettings

    greedy = GenerationSettings(max_new_tokens=new_tokens, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0)
    firsts, matches, positions = [], 0, 0
    for prompt in prompts:
        ids = reference.prompt_ids(prompt)
        theirs = list(reference.generate_ids(ids, greedy))
        ours = list(engine.generate_ids(ids, greedy))
        firsts.append(first_difference(ours, theirs))
        predicted = engine.forced_argmax(ids + theirs, len(ids))
        matches += sum(p == t for p, t in zip(predicted, theirs))
        positions += len(theirs)
    return Agreement(firsts, matches / max(positions, 1), positions)


@dataclass
class EngineComparison:
    """One prompt on several engines, for the Text page's "compare engines".

    Attributes:
        results: engine name -> its GenerationResult (text, tokens/s, load time, peak memory).
        agreement: engine name -> (first differing greedy token, teacher-forced next-token agreement) against
            PyTorch float32 on this prompt; filled only for greedy decoding, when PyTorch is among the engines.
    """

    results: dict
    agreement: dict[str, tuple[int | None, float]]


def comparison_rows(comparison: EngineComparison) -> list[dict]:
    """One row per engine for the page's table: speed, load, memory and, for greedy runs, agreement with PyTorch
    (short column names, so the table fits the page's width)."""
    from core import engines

    rows = []
    for name, result in comparison.results.items():
        m = result.measurement
        first, share = comparison.agreement.get(name, (None, None))
        rows.append({
            "engine": engines.ENGINES[name].title.split(" (")[0], "tokens/s": m.extra.get("tokens_per_s"),
            "first token (s)": m.extra.get("time_to_first_token_s"),
            "load (s)": "cached" if m.load_s is None else f"{m.load_s:.2f}",
            "memory (MB)": m.added_mb, "new tokens": result.new_tokens,
            "differs at token": "—" if name == engines.TORCH or share is None
            else ("none" if first is None else first + 1),
            "agreement": share,
        })
    return rows


def compare(key: str, prompt: str, settings, names: Sequence[str]) -> EngineComparison:
    """Generate from ``prompt`` on each engine in ``names`` (same settings), and compare each with PyTorch float32.

    Args:
        key: catalog key of a text-generation model.
        prompt: the user's prompt.
        settings: a :class:`core.textgen.GenerationSettings`.
        names: engine names, e.g. the output of :func:`core.engines.generation_engines`.

    Returns:
        The EngineComparison.
    """
    from core import engines

    streams = {}
    for name in names:
        # the same stop rule for every engine (exactly max_new_tokens), and the clock for the first token starts
        # once the model is loaded: a one-time conversion is the load column's, not the first token's
        streams[name] = stream = EngineStream(engines.load(key, name), prompt, settings, stop_at_eos=False,
                                              include_load=False)
        for _ in stream:
            pass
    agreement = {}
    reference = streams.get(engines.TORCH)
    if reference is not None and settings.temperature <= 0 and reference.token_ids:
        ids, theirs = reference.prompt_token_ids, reference.token_ids
        for name, stream in streams.items():
            if name != engines.TORCH:
                predicted = engines.load(key, name).model.forced_argmax(ids + theirs, len(ids))
                share = sum(p == t for p, t in zip(predicted, theirs)) / len(theirs)
                agreement[name] = (first_difference(stream.token_ids, theirs), share)
    return EngineComparison({name: stream.result for name, stream in streams.items()}, agreement)
