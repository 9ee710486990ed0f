"""Hosted chat, streamed (also with an image, for vision chat models), and text classification by prompting a
chat model with the label names."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from core.errors import InputError
from core.measure import Measurement
from core.progress import OnProgress, Progress, ShouldStop, ignore, never
from core.providers import http
from core.providers.endpoints import Endpoint
from core.providers.http import (HostedError, check_reachable, classify_error, hosted_measurement, post, require_key,
                                 stream_events, with_one_retry)
from core.text import ClassificationResult, Prediction
from core.textgen import GenerationResult


CHARS_PER_TOKEN = 4  # a common rule of thumb for English text with BPE tokenizers
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators each chat message adds in OpenAI-style templates


def estimate_tokens(messages: list[dict]) -> int:
    """An estimate of the prompt tokens of chat ``messages`` when the server reports no usage: their text at
    :data:`CHARS_PER_TOKEN` characters a token, plus :data:`MESSAGE_OVERHEAD_TOKENS` a message (images not counted)."""
    chars = 0
    for message in messages:
        content = message["content"]
        parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content if p.get("type") == "text"]
        chars += sum(map(len, parts))
    return max(1, round(chars / CHARS_PER_TOKEN)) + MESSAGE_OVERHEAD_TOKENS * len(messages)


class ChatStream:
    """Stream a chat completion piece by piece; afterwards ``result`` holds the whole answer and its figures.

    Figures: latency (request to last piece), time to first token, output tokens/s after the first token,
    and cost from the endpoint's prices (token counts from the server's usage report, else counted pieces).
    A stream cut in the middle keeps what arrived, with a note; other failures raise HostedError.
    ``image_url`` (see :func:`image_data_url`) sends an image with the prompt, for vision chat models.
    """

    def __init__(self, point: Endpoint, prompt: str, max_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = 0, system: str | None = None, image_url: str | None = None,
                 sleep=time.sleep) -> None:
        self.point, self.prompt, self.sleep = point, prompt, sleep
        content = prompt if image_url is None else [{"type": "text", "text": prompt},
                                                    {"type": "image_url", "image_url": {"url": image_url}}]
        self.messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        self.options = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        self.result: GenerationResult | None = None

    def _open(self):
        payload = {"model": self.point.model, "messages": self.messages, "stream": True,
                   "stream_options": {"include_usage": True}, **self.options}
        return post(self.point, "/chat/completions", payload)

    def __iter__(self) -> Iterator[str]:
        require_key(self.point)
        check_reachable(self.point)
        start = time.perf_counter()
        stream = with_one_retry(self._open, self.point, self.sleep)
        pieces, notes, usage, first = [], [], None, None
        try:
            for event in stream_events(stream):
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        first = first or time.perf_counter()
                        pieces.append(piece)
                        if sum(map(len, pieces)) > http.MAX_RESPONSE_BYTES:
                            raise HostedError("oversized", f"{self.point.provider.title} sent more than "
                                              f"{http.MAX_RESPONSE_BYTES // 2**20} MB of text; stopped reading.")
                        yield piece
        except HostedError as err:
            notes.append(str(err))
        except Exception as exc:  # noqa: BLE001 - a cut stream keeps what arrived
            error = classify_error(exc, self.point)
            if not pieces:
                raise error from None
            notes.append(f"The stream was cut after {len(pieces)} pieces ({error}); the text below is what arrived.")
        finally:
            stream.close()
        end = time.perf_counter()
        self.result = self._finish(pieces, usage, start, first, end, notes)

    def _finish(self, pieces, usage, start, first, end, notes) -> GenerationResult:
        text = "".join(pieces)
        prompt_tokens = int((usage or {}).get("prompt_tokens") or 0)
        output_tokens = int((usage or {}).get("completion_tokens") or 0)
        if not output_tokens:
            output_tokens = len(pieces)
            prompt_tokens = prompt_tokens or estimate_tokens(self.messages)
            notes.append(f"The server reported no token usage: the answer is counted as {output_tokens} streamed pieces, "
                         f"and the prompt as an estimated {prompt_tokens} tokens (about {CHARS_PER_TOKEN} characters a "
                         "token, the model's tokenizer being unknown here); the cost uses both.")
        ttft = (first or end) - start
        decode = end - (first or end)
        extra = {"time_to_first_token_s": ttft,
                 "tokens_per_s": (output_tokens - 1) / decode if decode > 0 and output_tokens > 1 else 0.0,
                 "cost_usd": self.point.prices.chat_usd(prompt_tokens, output_tokens)}
        return GenerationResult(text, output_tokens, notes, hosted_measurement(self.point, end - start, **extra),
                                prompt_tokens)


def chat(point: Endpoint, prompt: str, **options) -> GenerationResult:
    """A whole chat answer (the stream, collected). Options as :class:`ChatStream`."""
    stream = ChatStream(point, prompt, **options)
    for _ in stream:
        pass
    return stream.result


# --- classification by prompting a chat model ------------------------------------------------------
CLASSIFY_SYSTEM = ("You are a text classifier. Answer with exactly one label from the list, copied exactly, "
                   "and nothing else.")


def classify_prompt(text: str, labels: Sequence[str]) -> str:
    """The user message that asks a chat model for one of ``labels``."""
    return f"Labels: {', '.join(labels)}\nText: {text}\nLabel:"


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label a chat answer names: an exact match first, then the only label the answer contains."""
    clean = answer.strip().strip(".\"'`*").lower()
    for label in labels:
        if clean == label.lower():
            return label
    named = [label for label in labels if label.lower() in clean]
    return named[0] if len(named) == 1 else None


@dataclass
class HostedLabels:
    """Labels a chat model gave, one per text (None where its answer named no label), with cost and notes."""

    labels: list[str | None]
    input_tokens: int
    output_tokens: int
    notes: list[str]
    measurement: Measurement


def ask_labels(point: Endpoint, items: Sequence, labels: Sequence[str],
               ask: Callable[[object], GenerationResult],
               max_calls: int, on_progress: OnProgress = ignore, should_stop: ShouldStop = never,
               rate: str = "items_per_s") -> HostedLabels:
    """One chat call per item (``ask(item)``), each answer matched to a label, the throughput named ``rate``; the
    loop :func:`classify` and :func:`label_images` share. Reports a :class:`core.progress.Progress` per call."""
    if len(labels) < 2:
        raise InputError("Give at least two label names to choose from.")
    if len(items) > max_calls:
        raise InputError(f"{len(items)} items would be {len(items)} paid calls; the limit is {max_calls}.")
    start = time.perf_counter()
    found, notes, prompt_tokens, output_tokens = [], [], 0, 0
    for done, item in enumerate(items, 1):
        if should_stop():
            notes.append(f"Stopped after {done - 1} of {len(items)} calls; the rest count as unanswered.")
            break
        answer = ask(item)
        prompt_tokens += answer.prompt_tokens
        output_tokens += answer.new_tokens
        found.append(match_label(answer.text, labels))
        elapsed = time.perf_counter() - start
        on_progress(Progress(done, len(items), f"{done} of {len(items)} calls ({elapsed:.1f} s)", elapsed))
    seconds = time.perf_counter() - start
    answered = len(found)
    unmatched = sum(label is None for label in found)
    if unmatched:
        notes.append(f"{unmatched} of {answered} answers named no label; they count as wrong.")
    found += [None] * (len(items) - answered)
    cost = point.prices.chat_usd(prompt_tokens, output_tokens)
    extra = {rate: answered / seconds if seconds > 0 else 0.0, "cost_usd": cost,
             "cost_per_1000_usd": cost / max(answered, 1) * 1000}
    return HostedLabels(found, prompt_tokens, output_tokens, notes, hosted_measurement(point, seconds, **extra))


def classify(point: Endpoint, texts: Sequence[str], labels: Sequence[str], max_calls: int = 500,
             on_progress: OnProgress = ignore, should_stop: ShouldStop = never) -> HostedLabels:
    """Zero-shot classification by prompting a chat model with the label names, one call per text.

    Args:
        point: a chat endpoint.
        texts: the texts.
        labels: the label names, as the user's data spells them.
        max_calls: refuse more texts than this (each one is a paid call).
        on_progress: told after each call (``done`` calls of ``total``).
        should_stop: when it returns True, no further call is made; the rest count as unanswered, with a note.

    Returns:
        HostedLabels; its measurement has items/s, cost_usd and cost_per_1000_usd (per text answered).
    """
    return ask_labels(point, texts, labels, lambda text: chat(
        point, classify_prompt(text, labels), max_tokens=8, temperature=0.0, system=CLASSIFY_SYSTEM),
        max_calls, on_progress, should_stop)


def classify_texts(point: Endpoint, texts: Sequence[str], labels: Sequence[str], max_calls: int = 500
                   ) -> ClassificationResult:
    """:func:`classify` as a text family result, as a local classifier gives: one prediction per text, its label
    None where the answer named none, no scores."""
    answer = classify(point, texts, labels, max_calls)
    return ClassificationResult([Prediction(text, label) for text, label in zip(texts, answer.labels)], answer.notes,
                                answer.measurement)
