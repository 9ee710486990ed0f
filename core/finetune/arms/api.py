"""Arm 5, "call an API": a hosted chat model prompted with the label names, scored on the same held-out
split as the other four, with its dollar cost next to their training time."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core import providers
from core.errors import InputError
from core.finetune.arms.base import APPROACHES, ArmResult, score
from core.progress import OnProgress, ShouldStop, ignore, never


@dataclass(frozen=True)
class ApiSettings:
    """The endpoint to call (key included; never stored) and the most calls allowed (each one is paid)."""

    endpoint: providers.Endpoint
    max_calls: int = 200


def run_api(data, train_idx: Sequence[int], test_idx: Sequence[int], settings: ApiSettings,
            on_progress: OnProgress = ignore, should_stop: ShouldStop = never) -> ArmResult:
    """Classify every held-out text by asking a hosted chat model for one of the class names.

    Args:
        data: LabelledData of kind ``text`` (images would need a vision endpoint).
        train_idx: unused (nothing is trained), kept for one signature across arms.
        test_idx: held-out items.
        settings: endpoint and call limit.
        on_progress: told after each call (``done`` calls of ``total``).
        should_stop: when it returns True, no further call is made; the rest count as wrong.

    Returns:
        ArmResult with ``params`` holding the cost: ``cost_usd`` for the held-out set and ``cost_per_1000_usd``.
    """
    if data.kind != "text":
        raise InputError("The API arm prompts a chat model with text; image data needs a vision endpoint.")
    labels = data.classes()
    texts = [data.items[i] for i in test_idx]
    answer = providers.classify(settings.endpoint, texts, labels, max_calls=settings.max_calls,
                                on_progress=on_progress, should_stop=should_stop)
    predicted = [label if label is not None else "(no label)" for label in answer.labels]
    accuracy, macro_f1, confusion = score([data.labels[i] for i in test_idx], predicted, labels)
    m = answer.measurement
    cost = m.extra["cost_usd"]
    notes = [f"No training: each held-out text was sent to {settings.endpoint.label} with the {len(labels)} class names; "
             f"{answer.input_tokens:,} input + {answer.output_tokens:,} output tokens cost ${cost:.4f} "
             f"(${m.extra['cost_per_1000_usd']:.3f} per 1,000 items at the prices set)."] + answer.notes
    return ArmResult(
        arm="api", approach=APPROACHES["api"], model=settings.endpoint.label, source="hosted", device=m.device, labels=labels,
        accuracy=accuracy, macro_f1=macro_f1, confusion=confusion, train_s=0.0,
        latency_s=m.latency_s / max(len(texts), 1), peak_mb=0.0, trainable_params=0, train_examples=0,
        test_examples=len(test_idx), params={"endpoint": settings.endpoint.label, "cost_usd": cost,
                                             "cost_per_1000_usd": m.extra["cost_per_1000_usd"]},
        notes=notes, correct=[p == data.labels[i] for p, i in zip(predicted, test_idx)],
    )
