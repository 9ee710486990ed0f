"""The verdict: one paragraph comparing the arms that ran, from their measured figures, told apart only
where the held-out split can (McNemar's exact test, or the Wilson intervals without per-item outcomes)."""
from __future__ import annotations

from core.finetune import stats
from core.finetune.arms import ARMS, NAMES, ArmResult


def compare_arms(first: ArmResult, second: ArmResult) -> stats.Difference:
    """Whether two arms' held-out accuracies differ beyond chance: McNemar's exact test on their per-item
    outcomes (they were scored on the same items), or the overlap of their Wilson intervals without them."""
    return stats.compare(first.correct or None, second.correct or None,
                         (first.hits, first.test_examples), (second.hits, second.test_examples))


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def _evidence(best: ArmResult, compared: list[tuple[ArmResult, stats.Difference]]) -> str:
    """'(McNemar's exact test ...: p = 0.625 against fine-tune, ...)' or the Wilson intervals compared."""
    if all(d.p_value is not None for _, d in compared):
        return f"({stats.MCNEMAR}: " + ", ".join(f"{_p(d.p_value)} against {NAMES[r.arm]}" for r, d in compared) + ")"
    shown = [best] + [r for r, _ in compared]
    return f"({stats.OVERLAP}: " + ", ".join(f"{NAMES[r.arm]} {stats.interval_text(r.hits, r.test_examples)}"
                                             for r in shown) + ")"


def _separation(best: ArmResult, others: list[ArmResult]) -> tuple[str, list[ArmResult]]:
    """The sentence saying which arms this split tells apart from the best, and the ones it cannot."""
    compared = [(r, compare_arms(best, r)) for r in others]
    tied = [r for r, d in compared if not d.distinguishable]
    apart = [r for r, d in compared if d.distinguishable]
    on = f"On these {best.test_examples} held-out examples"
    if not apart:
        sentence = (f"{on} the arms are not distinguishable {_evidence(best, compared)}: the ranking may be chance; "
                    "more held-out examples would tell them apart.")
    elif not tied:
        sentence = f"{on}, {NAMES[best.arm]} is ahead of every other arm beyond chance {_evidence(best, compared)}."
    else:
        sentence = (f"{on}, {NAMES[best.arm]} is ahead of {' and '.join(NAMES[r.arm] for r in apart)} beyond chance, "
                    f"but not distinguishable from {' and '.join(NAMES[r.arm] for r in tied)} "
                    f"{_evidence(best, compared)}.")
    return sentence, tied


def prompt_sentence(prompt: ArmResult) -> str:
    """'Prompting smollm2-135m with 8 labelled examples (4 per class) scored 71%, with no training (...).'"""
    per_class = prompt.params.get("per_class", 0)
    examples = (f"with {prompt.train_examples} labelled example{'s' if prompt.train_examples != 1 else ''} "
                f"({per_class} per class)" if prompt.train_examples else "with the class names alone")
    how = prompt.params.get("scoring", "log-probabilities")
    cost = (f", ${prompt.params['cost_per_1000_usd']:.3f} per 1,000 items" if "cost_per_1000_usd" in prompt.params
            else "")
    return (f"Prompting {prompt.model} {examples} scored {prompt.accuracy:.0%} with no training (labels from {how}; "
            f"{prompt.params.get('prompt_tokens_per_item', 0):,.0f} prompt tokens and {prompt.latency_s:.2f} s per "
            f"item{cost}).")


def verdict(results: dict[str, ArmResult]) -> str:
    """One paragraph comparing the arms that ran, computed from their measured figures.

    Arms are told apart only when the held-out split can: McNemar's exact test on the same held-out items
    (Wilson intervals when per-item outcomes are missing). An arm within 2 points of the best, or not
    distinguishable from it, counts as close, and the cheapest close arm is recommended.
    """
    parts = []
    zero, prompt, transfer, tune, scratch, api = (results.get(arm) for arm in ARMS)
    if api:
        parts.append(f"Calling {api.model} scored {api.accuracy:.0%} with no training, for "
                     f"${api.params.get('cost_usd', 0):.4f} on the held-out set "
                     f"(${api.params.get('cost_per_1000_usd', 0):.3f} per 1,000 items).")
    if zero:
        parts.append(f"Used as is, {zero.model} scored {zero.accuracy:.0%} with no training.")
    if prompt:
        parts.append(prompt_sentence(prompt))
    if transfer:
        parts.append(f"Transfer learning reached {transfer.accuracy:.0%} in {transfer.train_s:.1f} s "
                     f"({transfer.train_examples} labelled examples).")
    if tune and transfer:
        gain = (tune.accuracy - transfer.accuracy) * 100
        ratio = tune.train_s / max(transfer.train_s, 1e-9)
        times = f"{ratio:.1f}×" if ratio < 10 else f"{ratio:,.0f}×"
        parts.append(f"Fine-tuning {'gained' if gain >= 0 else 'lost'} {abs(gain):.1f} points for {times} the time "
                     f"({tune.train_s:.1f} s).")
    elif tune:
        parts.append(f"Fine-tuning reached {tune.accuracy:.0%} in {tune.train_s:.1f} s.")
    if scratch:
        parts.append(f"From scratch reached {scratch.accuracy:.0%} in {scratch.train_s:.1f} s.")
    if len(results) >= 2:
        best, *others = sorted(results.values(), key=lambda r: (-r.accuracy, r.train_s))
        sentence, tied = _separation(best, others)
        parts.append(sentence)
        close = [best] + [r for r in others if r in tied or r.accuracy >= best.accuracy - 0.02]

        def near(r: ArmResult) -> str:
            return "comes within 2 points of" if r.accuracy >= best.accuracy - 0.02 else "cannot be told apart from"

        if zero is best:
            parts.append(f"Using the model as is scores the best ({best.accuracy:.0%}) with no labels and no training: "
                         "start there.")
        elif zero in close:
            parts.append(f"Using the model as is {near(zero)} the best ({best.accuracy:.0%}) with no labels and no "
                         "training: try it first.")
        else:
            cheapest = min(close, key=lambda r: r.train_s)
            if cheapest is not best:
                parts.append(f"Best accuracy: {NAMES[best.arm]} ({best.accuracy:.0%}); {NAMES[cheapest.arm]} "
                             f"{near(cheapest)} it ({cheapest.accuracy:.0%}) for {cheapest.train_s:.1f} s of training "
                             f"instead of {best.train_s:.1f} s.")
            elif len(close) > 1:
                parts.append(f"Highest here: {NAMES[best.arm]} ({best.accuracy:.0%}), also the cheapest to train of "
                             f"the arms close to it ({best.train_s:.1f} s).")
            else:
                parts.append(f"Best: {NAMES[best.arm]} ({best.accuracy:.0%}).")
    return " ".join(parts)
