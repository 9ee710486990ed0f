"""Arm "prompt with examples" (in-context learning): k labelled examples per class, taken from the training split
in a fixed, seeded order, are put in a generation model's prompt; then each held-out item is classified. Nothing is
trained: what the examples buy in the prompt sits beside what the same examples buy when they train a head.

Locally (SmolLM2 on the engine the Text page picks, :func:`core.engines.choose_generation_engine`) the label comes
from scoring, as evaluation harnesses score multiple-choice items: each class name's tokens are scored after the
prompt (the sum of their log-probabilities) and the most likely class wins, so every answer is a valid class and
the result is deterministic. On a hosted chat endpoint the examples become earlier turns of the conversation and
the label comes from the answer's log-probabilities where the endpoint returns them, else from its text
(:mod:`core.providers.fewshot`). The prompt is cut to the model's context: fewer examples per class, with a note.

A chat model (SmolLM2-Instruct) reads the same conversation locally as a hosted endpoint gets, in its own chat
template: the instruction with the class names, each example as a user turn answered by its label, then the item;
each class name is scored as the start of the answer. A model without a chat template reads a plain-text prompt
(:func:`plain_prompt`): ``Text: ...`` / ``Label: ...`` blocks, each class scored after the last ``Label:``.
(On the shipped sentiment texts, SmolLM2 scored 85-95% in its chat template and 18-45% on the plain text.)
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core import providers
from core.catalog import get_spec
from core.errors import InputError
from core.finetune.arms.base import APPROACHES, ArmResult, correct_of, labels_of, score
from core.finetune.data import subsample_per_class
from core.measure import PeakMB, measured
from core.progress import OnProgress, Progress, ShouldStop, ignore, never

PROMPT_MODEL = "smollm2-135m"  # the local generation model (packaged offline as GGUF)
HEADER = "Classify each text as one of: {labels}.\n\n"  # the plain-text prompt, for a model without a chat template
EXAMPLE = "Text: {text}\nLabel: {label}\n\n"
QUERY = "Text: {text}\nLabel:"
MAX_ITEM_CHARS = 1000  # an example or held-out text longer than this keeps its first characters (with a note)
HOSTED_CONTEXT = 4096  # the context assumed for a hosted model, in estimated tokens, unless set
NOT_SCORED = "(not scored)"  # the prediction of items left when the arm was stopped


@dataclass(frozen=True)
class PromptSettings:
    """The prompt arm's settings.

    Attributes:
        per_class: k, the labelled examples per class put in the prompt (0: the class names alone).
        model: catalog key of the local generation model.
        engine: a generation engine name, or ``auto`` (the Text page's choice).
        endpoint: a hosted chat endpoint; when set, the arm runs there instead of locally.
        context_tokens: the hosted model's context, in estimated tokens (a local engine knows its own).
        seed: the seed of the examples' pick and order.
        max_calls: the most hosted calls allowed (each one is paid).
    """

    per_class: int = 4
    model: str = PROMPT_MODEL
    engine: str = "auto"  # core.engines.AUTO, written out so that importing the arms imports no engine code
    endpoint: providers.Endpoint | None = None
    context_tokens: int = HOSTED_CONTEXT
    seed: int = 0
    max_calls: int = 500


def clean(text: str) -> str:
    """One line: a text's whitespace (newlines included) as single spaces, so it cannot break the prompt's layout,
    cut to :data:`MAX_ITEM_CHARS`."""
    return " ".join(str(text).split())[:MAX_ITEM_CHARS]


def plain_prompt(examples: Sequence[tuple[str, str]], text: str, labels: Sequence[str]) -> str:
    """The prompt as plain text (for a model without a chat template): the instruction, the examples, the item."""
    return (HEADER.format(labels=", ".join(labels)) + "".join(EXAMPLE.format(text=t, label=l) for t, l in examples)
            + QUERY.format(text=text))


def pick_examples(data, train_idx: Sequence[int], per_class: int, seed: int = 0) -> list[int]:
    """``per_class`` training items of each class (all of a smaller class), in a fixed, seeded order.

    Only ``train_idx`` is drawn from, so a held-out item never reaches a prompt. The picks are nested (those for
    k are among those for any larger k), and the order is a seeded shuffle, so that no class always comes last.

    Args:
        data: LabelledData.
        train_idx: the training split.
        per_class: k (0 or less: none).
        seed: the seed of the pick and of the order.

    Returns:
        Item indices in prompt order.
    """
    if per_class <= 0:
        return []
    chosen = subsample_per_class(list(train_idx), data.labels, per_class, seed=seed)
    return [chosen[i] for i in np.random.default_rng(seed).permutation(len(chosen))]


@dataclass
class Fitted:
    """The examples that fit the context, and the notes saying what was cut."""

    per_class: int
    examples: list[int]
    notes: list[str]


def fit_examples(data, train_idx: Sequence[int], per_class: int, seed: int, room: int, prompt_tokens) -> Fitted:
    """The largest k' <= ``per_class`` whose prompt fits: ``prompt_tokens(examples)`` (the prompt with those examples
    and the longest held-out item) within ``room`` tokens.

    Args:
        data, train_idx, per_class, seed: as :func:`pick_examples`.
        room: tokens the prompt may take (the context less the longest class name).
        prompt_tokens: ``prompt_tokens(example indices) -> int``, the prompt's length with them.

    Returns:
        The Fitted examples, with notes when fewer than asked were used (the smallest class, or the context).

    Raises:
        InputError: when not even the class names and the longest (cut) item fit.
    """
    notes = []
    needed = prompt_tokens([])
    if needed > room:
        raise InputError(f"The prompt does not fit the model's context even without examples ({needed} tokens for "
                         f"{room}): use fewer or shorter class names.")
    smallest = min(sum(data.labels[i] == label for i in train_idx) for label in data.classes())
    if 0 < smallest < per_class:
        notes.append(f"The smallest class has {smallest} training examples, so it gives {smallest} to the prompt, "
                     f"not {per_class}.")
    for k in range(per_class, 0, -1):
        examples = pick_examples(data, train_idx, k, seed)
        if prompt_tokens(examples) <= room:
            if k < per_class:
                notes.append(f"Only {k} example{'s' if k != 1 else ''} per class fitted the model's context "
                             f"({room} tokens with the longest held-out item), not the {per_class} asked for.")
            return Fitted(k, examples, notes)
    if per_class:
        notes.append(f"No example fitted the model's context ({room} tokens with the longest held-out item): the "
                     f"class names alone, not the {per_class} per class asked for.")
    return Fitted(0, [], notes)


def run_prompt(data, train_idx: Sequence[int], test_idx: Sequence[int], settings: PromptSettings,
               on_progress: OnProgress = ignore, should_stop: ShouldStop = never) -> ArmResult:
    """Classify every held-out text with k labelled training examples per class in the prompt.

    Args:
        data: LabelledData of kind ``text``.
        train_idx: the training split: the examples are drawn from it, never from ``test_idx``.
        test_idx: held-out items.
        settings: k, the model and engine, or a hosted endpoint.
        on_progress: told after each item.
        should_stop: asked before each item; True ends the arm, and the items left count as wrong.

    Returns:
        ArmResult; ``params`` hold ``per_class`` (the k that fitted), ``prompt_tokens_per_item``, ``scoring``
        (how labels were chosen) and ``engine``; hosted runs add ``cost_usd`` and ``cost_per_1000_usd``.
    """
    if data.kind != "text":
        raise InputError("Prompting with examples needs text: image data would need a vision model.")
    if settings.per_class < 0:
        raise InputError("Examples per class cannot be negative.")
    run = run_hosted if settings.endpoint is not None else run_local
    return run(data, list(train_idx), list(test_idx), settings, on_progress, should_stop)


def _examples_text(fitted: Fitted, seed: int) -> str:
    """'6 labelled training examples (2 per class, seed 0)', or 'the class names alone' for k = 0."""
    n = len(fitted.examples)
    if not n:
        return "the class names alone, no examples,"
    return f"{n} labelled training example{'s' if n != 1 else ''} ({fitted.per_class} per class, seed {seed})"


def _report(on_progress: OnProgress, start: float):
    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        on_progress(Progress(done, total, f"{done} of {total} held-out items ({elapsed:.1f} s)", elapsed))
    return report


def _stopped_note(done: int, total: int) -> list[str]:
    return [f"Stopped after {done} of {total} held-out items; the rest count as wrong."] if done < total else []


def _result(data, test_idx, predicted, **fields) -> ArmResult:
    labels = data.classes()
    predicted = predicted + [NOT_SCORED] * (len(test_idx) - len(predicted))
    accuracy, macro_f1, confusion = score(labels_of(data, test_idx), predicted, labels)
    return ArmResult(arm="prompt", approach=APPROACHES["prompt"], labels=labels, accuracy=accuracy, macro_f1=macro_f1,
                     confusion=confusion, train_s=0.0, trainable_params=0, test_examples=len(test_idx),
                     correct=correct_of(data, test_idx, predicted), stopped=NOT_SCORED in predicted,
                     **fields)


def run_local(data, train_idx: list[int], test_idx: list[int], settings: PromptSettings,
              on_progress: OnProgress = ignore, should_stop: ShouldStop = never) -> ArmResult:
    """:func:`run_prompt` on the local generation model, each class scored by its tokens' log-probabilities.

    A chat model reads the same conversation a hosted endpoint gets (:func:`core.providers.few_shot_messages`),
    in its own chat template, and each class name is scored as the start of its answer; a model without a template
    reads :func:`plain_prompt`, and each class name is scored after ``Label:``.
    """
    from core import engines, registry

    labels = data.classes()
    # the model's resolution as the Text page sees it: the loaded copy's, else the first source found here
    spec = get_spec(settings.model)
    resolution = registry.availability(spec).resolution or registry.resolve(spec)
    choice = engines.choose_generation_engine(resolution, settings.engine)
    with measured() as timing:
        loaded = engines.load(settings.model, choice.engine)
        lm = loaded.model
        runner_memory = getattr(lm, "memory_mb", lambda: 0.0)  # an engine in its own process: its memory counts too
        runner_start = runner_memory() if loaded.load_s is None else 0.0  # a model loaded now is memory this run added
        chat = lm.chat_ids([{"role": "user", "content": "?"}]) is not None

        def prompt_ids(examples: list[int], text: str) -> list[int]:
            pairs = [(clean(data.items[i]), data.labels[i]) for i in examples]
            if chat:
                return lm.chat_ids(providers.few_shot_messages(pairs, text, labels))
            return lm.token_ids([plain_prompt(pairs, text, labels)], True)[0]

        continuations = lm.token_ids(labels if chat else [f" {label}" for label in labels])
        texts = [clean(data.items[i]) for i in test_idx]
        longest = max(texts, key=len)
        fitted = fit_examples(data, train_idx, settings.per_class, settings.seed,
                              lm.context - max(map(len, continuations)),
                              lambda examples: len(prompt_ids(examples, longest)))
        restarted = getattr(lm, "take_restart_s", lambda: None)()  # a runner that had died starts again: a load
        predicted, prompt_tokens = [], 0
        start = time.perf_counter()
        report = _report(on_progress, start)
        for done, text in enumerate(texts):
            if should_stop():
                break
            ids = prompt_ids(fitted.examples, text)
            scores = lm.score_continuations(ids, continuations)
            predicted.append(labels[int(np.argmax(scores))])
            prompt_tokens += len(ids)
            report(done + 1, len(texts))
        seconds = time.perf_counter() - start
    peak = PeakMB(float(timing.peak_mb) + runner_memory(), timing.peak_mb.start_mb + runner_start)
    form = ("as earlier turns of a conversation in its chat template; each class name scored as the start of its "
            "answer" if chat else "as plain text; each class name scored after “Label:”")
    notes = [f"No training: {_examples_text(fitted, settings.seed)} in the prompt of {get_spec(settings.model).title} "
             f"on {engines.ENGINES[choice.engine].title}, {form} (the sum of its tokens' log-probabilities), the most "
             "likely class chosen."] + fitted.notes
    if choice.note:
        notes.append(choice.note)
    notes += _cut_note(data, list(test_idx) + fitted.examples) + _stopped_note(len(predicted), len(texts))
    return _result(
        data, test_idx, predicted, model=settings.model, source=loaded.resolution.source, device=lm.label,
        latency_s=seconds / max(len(predicted), 1), peak_mb=peak,
        train_examples=len(fitted.examples), load_s=(loaded.load_s or 0.0) + (restarted or 0.0) or None,
        params={"engine": choice.engine, "scoring": "log-probabilities", "scored_by": choice.engine,
                "prompt": "chat template" if chat else "plain text",
                "per_class": fitted.per_class, "per_class_asked": settings.per_class, "seed": settings.seed,
                "prompt_tokens_per_item": prompt_tokens / max(len(predicted), 1), "context_tokens": lm.context},
        notes=notes)


def _cut_note(data, indices: list[int]) -> list[str]:
    cut = sum(len(" ".join(str(data.items[i]).split())) > MAX_ITEM_CHARS for i in indices)
    return [f"{cut} text{'s' if cut != 1 else ''} longer than {MAX_ITEM_CHARS:,} characters kept their first "
            f"{MAX_ITEM_CHARS:,}."] if cut else []


def run_hosted(data, train_idx: list[int], test_idx: list[int], settings: PromptSettings,
               on_progress: OnProgress = ignore, should_stop: ShouldStop = never) -> ArmResult:
    """:func:`run_prompt` on a hosted chat endpoint: the examples as earlier turns, one call per held-out item."""
    point, labels = settings.endpoint, data.classes()
    if len(test_idx) > settings.max_calls:
        raise InputError(f"{len(test_idx)} held-out items would be {len(test_idx)} paid calls; the limit is "
                         f"{settings.max_calls}.")

    def prompt_tokens(examples: list[int]) -> int:  # the hosted tokenizer is unknown here: estimated
        pairs = [(clean(data.items[i]), data.labels[i]) for i in examples]
        return providers.estimate_tokens(providers.few_shot_messages(pairs, longest, labels))

    longest = max((clean(data.items[i]) for i in test_idx), key=len)
    fitted = fit_examples(data, train_idx, settings.per_class, settings.seed, settings.context_tokens - 16,
                          prompt_tokens)
    examples = [(clean(data.items[i]), data.labels[i]) for i in fitted.examples]
    predicted, scored, input_tokens, output_tokens, logprobs, notes = [], 0, 0, 0, True, []
    start = time.perf_counter()
    report = _report(on_progress, start)
    for done, i in enumerate(test_idx):
        if should_stop():
            break
        try:
            answer = providers.classify_few_shot(point, examples, clean(data.items[i]), labels, logprobs)
        except providers.HostedError as err:
            if not (logprobs and err.kind == "failed"):
                raise
            logprobs = False  # the endpoint refused log-probabilities: ask for the class name instead
            notes.append(f"{point.provider.title} refused log-probabilities ({err}); its answers were matched to "
                         "the class names instead.")
            answer = providers.classify_few_shot(point, examples, clean(data.items[i]), labels, logprobs)
        predicted.append(answer.label if answer.label is not None else "(no label)")
        scored += answer.scored
        input_tokens += answer.input_tokens
        output_tokens += answer.output_tokens
        report(done + 1, len(test_idx))
    seconds = time.perf_counter() - start
    answered = max(len(predicted), 1)
    cost = point.prices.chat_usd(input_tokens, output_tokens)
    how = ("log-probabilities" if scored == len(predicted) and predicted else
           "answer text" if not scored else "log-probabilities, else answer text")
    notes.insert(0, f"No training: {_examples_text(fitted, settings.seed)} sent to {point.label} as earlier turns "
                    f"of the conversation. {scored} of {len(predicted)} labels came from the log-probabilities of the "
                    "answer's first token (each class by the alternatives that begin its name); the rest from the answer's "
                    f"text, matched to a class name. {input_tokens:,} input + {output_tokens:,} output tokens cost "
                    f"${cost:.4f} (${cost / answered * 1000:.3f} per 1,000 items at the prices set).")
    notes += fitted.notes + _cut_note(data, list(test_idx) + fitted.examples) + _stopped_note(len(predicted),
                                                                                               len(test_idx))
    unmatched = predicted.count("(no label)")
    if unmatched:
        notes.append(f"{unmatched} answer{'s' if unmatched != 1 else ''} named no class; they count as wrong.")
    return _result(
        data, test_idx, predicted, model=point.label, source="hosted", device=f"hosted: {point.provider.title}",
        latency_s=seconds / answered, peak_mb=0.0, train_examples=len(examples), load_s=None,
        params={"engine": "hosted", "endpoint": point.label, "scoring": how, "scored_by": "hosted",
                "per_class": fitted.per_class, "per_class_asked": settings.per_class, "seed": settings.seed,
                "prompt_tokens_per_item": input_tokens / answered, "context_tokens": settings.context_tokens,
                "cost_usd": cost, "cost_per_1000_usd": cost / answered * 1000},
        notes=notes)
