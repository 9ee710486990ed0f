"""Few-shot classification on a hosted chat endpoint: labelled examples as earlier turns of the conversation, then
one item; its label from the answer's log-probabilities where the endpoint returns them, else from the answer's text
(matched to a label as :func:`core.providers.chat.match_label` does for "call an API").

A chat endpoint returns log-probabilities only for the tokens it generates, with the top alternatives at each
(OpenAI's ``top_logprobs``, at most 20). So a class is scored here by the probability that the answer *starts*
with it: the summed probability of the alternatives for the answer's first token that begin the class name. Class
names that the first token cannot tell apart (two that start alike), or that none of the alternatives begins,
fall back to the answer's text, and the result says how many did.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from core.providers.chat import CLASSIFY_SYSTEM, match_label
from core.providers.endpoints import Endpoint
from core.providers.http import HostedError, check_reachable, post, read_json, require_key, with_one_retry

TOP_LOGPROBS = 20  # the most alternatives OpenAI's chat API returns per token


@dataclass
class FewShotAnswer:
    """One item's answer.

    Attributes:
        text: what the model wrote.
        label: the class chosen (None when neither the scores nor the text named one).
        scored: True when ``label`` came from log-probabilities, False when from the text.
        input_tokens, output_tokens: the server's usage report.
        seconds: the call's wall time.
    """

    text: str
    label: str | None
    scored: bool
    input_tokens: int
    output_tokens: int
    seconds: float


def few_shot_messages(examples: Sequence[tuple[str, str]], text: str, labels: Sequence[str]) -> list[dict]:
    """The chat messages: the instruction with the class names, each example as a user turn answered by its label,
    then ``text``.

    Args:
        examples: (text, label) pairs in prompt order.
        text: the item to classify.
        labels: the class names.
    """
    messages = [{"role": "system", "content": f"{CLASSIFY_SYSTEM} Labels: {', '.join(labels)}."}]
    for example, label in examples:
        messages += [{"role": "user", "content": f"Text: {example}"}, {"role": "assistant", "content": label}]
    return messages + [{"role": "user", "content": f"Text: {text}"}]


def first_token_label(alternatives: Sequence[dict], labels: Sequence[str]) -> str | None:
    """The class the answer most probably starts with, from its first token's top alternatives.

    Args:
        alternatives: ``[{"token": str, "logprob": float}, ...]`` for the answer's first token.
        labels: the class names.

    Returns:
        The class, or None when no alternative begins a class name, or when the best class ties with another
        (their names start alike, so the first token cannot tell them apart).
    """
    mass = dict.fromkeys(labels, 0.0)
    for alternative in alternatives:
        piece = str(alternative.get("token", "")).strip().strip("\"'`*").lower()
        if not piece:
            continue
        for label in labels:
            if label.lower().startswith(piece):
                mass[label] += math.exp(float(alternative["logprob"]))
    ranked = sorted(mass.items(), key=lambda pair: -pair[1])
    if ranked[0][1] <= 0 or (len(ranked) > 1 and math.isclose(ranked[0][1], ranked[1][1])):
        return None
    return ranked[0][0]


def classify_few_shot(point: Endpoint, examples: Sequence[tuple[str, str]], text: str, labels: Sequence[str],
                      logprobs: bool = True, sleep=time.sleep) -> FewShotAnswer:
    """Ask a chat endpoint for ``text``'s class, after the labelled ``examples``; greedy, at most 8 tokens.

    Args:
        point: a chat endpoint.
        examples: (text, label) pairs in prompt order.
        text: the item.
        labels: the class names.
        logprobs: ask for the first token's top alternatives and score the classes with them.
        sleep: how to wait before the one retry after a 429 (tests pass a fake).

    Returns:
        The FewShotAnswer.

    Raises:
        HostedError: for a failed call (the endpoint refusing ``logprobs`` included: the caller asks again without).
    """
    require_key(point)
    check_reachable(point)
    payload = {"model": point.model, "messages": few_shot_messages(examples, text, labels), "max_tokens": 8,
               "temperature": 0.0, "seed": 0}
    if logprobs:
        payload |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
    start = time.perf_counter()
    response = with_one_retry(lambda: post(point, "/chat/completions", payload), point, sleep)
    try:
        answer = read_json(response, point)
        choice = answer["choices"][0]
        said = str((choice.get("message") or {}).get("content") or "")
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        raise HostedError("malformed", f"{point.provider.title} sent an answer this app cannot read: {err}.") from None
    seconds = time.perf_counter() - start
    usage = answer.get("usage") or {}
    content = ((choice.get("logprobs") or {}).get("content") or []) if logprobs else []
    label = first_token_label(content[0].get("top_logprobs") or [], labels) if content else None
    scored = label is not None
    return FewShotAnswer(said, label if scored else match_label(said, labels), scored,
                         int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), seconds)
