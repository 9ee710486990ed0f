"""The "prompt with examples" arm: seconds per held-out item for k = 0 and k = 4 examples per class, on the shipped
sentiment texts (assets/sentiment.csv, the Fine-tune page's example split: 25% held out, seed 0), on the default
generation engine (:func:`core.engines.choose_generation_engine`, as the Text page picks).

Each row is the arm itself (:func:`core.finetune.arms.run_prompt`): the prompt built per item in SmolLM2's chat
template and every class name scored after it. The k = 4 row's reference is the k = 0 row, so its ratio is what
four examples per class cost per item (llama.cpp reuses the examples' part of the prompt from item to item, so
only each item's own tokens and the class names run). Accuracy and prompt tokens per item are printed beside.

Usage: python -m bench.prompt [--quick]   (--quick: the first 24 held-out items, one run; else all, the median of 3)
"""
from __future__ import annotations

import os
import statistics

from bench.common import parse_args, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUICK_ITEMS = 24


def seconds_per_item(k: int, items: int | None, runs: int) -> tuple[float, object]:
    """The median seconds per held-out item of ``runs`` runs with ``k`` examples per class, and the last result."""
    from core.finetune import arms
    from core.finetune import data as labelled

    sentiment = labelled.example_sentiment()
    train, test = labelled.split(sentiment, 0.25, 0)
    test = test[:items] if items else test
    results = [arms.run_prompt(sentiment, train, test, arms.PromptSettings(per_class=k)) for _ in range(runs)]
    return statistics.median(r.latency_s for r in results), results[-1]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    items, runs = (QUICK_ITEMS, 1) if args.quick else (None, 3)
    seconds_per_item(0, 2, 1)  # loads the model (and starts its runner): not part of any row
    rows, reference = [], None
    for k in (0, 4):
        seconds, result = seconds_per_item(k, items, runs)
        rows.append({
            "workload": f"prompt arm, k = {k} per class, {result.test_examples} sentiment texts, s per item",
            "ours": seconds, "reference": reference, "unit": "s/item",
            "ratio": reference / seconds if reference else None, "peak_mb": result.peak_mb,
            "target": "", "status": "", "engine": result.params["engine"], "accuracy": result.accuracy,
            "prompt_tokens_per_item": result.params["prompt_tokens_per_item"], "examples": result.train_examples,
            "note": ("reference: the k = 0 row (the class names alone)" if reference else
                     f"{result.device}; scored by {result.params['scored_by']}, prompt in its "
                     f"{result.params['prompt']}"),
        })
        reference = reference or seconds
    report("prompt", rows)


if __name__ == "__main__":
    main()
