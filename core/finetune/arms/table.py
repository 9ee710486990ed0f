"""The results table of the page: one row per arm, with the 95% Wilson interval of each held-out accuracy."""
from __future__ import annotations

from core.finetune import stats
from core.finetune.arms.base import ARMS, STOPPED_BY, TITLES, ArmResult


def stopped_by_text(result: ArmResult) -> str:
    """'early stopping · 23 epochs' for the results table; '—' for arms without a training loop."""
    if not result.stopped_by:
        return "—"
    return f"{STOPPED_BY[result.stopped_by]} · {result.curve[-1]['epoch']:g} epochs"


def per_thousand_usd(result: ArmResult) -> float:
    """What 1,000 more items would cost: an API's charge, else the inference time priced by the host."""
    from core.costs import cost_usd

    if "cost_per_1000_usd" in result.params:
        return float(result.params["cost_per_1000_usd"])
    return cost_usd(result.latency_s * 1000, result.device)


def results_table(results: dict[str, ArmResult]) -> list[dict]:
    """One row per arm for the page's table, with the 95% Wilson interval of each held-out accuracy; an arm that
    prompts a model also has its prompt's length per item (None for the others)."""
    return [{
        "arm": TITLES[r.arm], "model": r.model, "accuracy": r.accuracy,
        "95% interval": stats.interval_text(r.hits, r.test_examples), "macro-F1": r.macro_f1,
        "training (s)": r.train_s, "stopped by": stopped_by_text(r), "latency / example (ms)": r.latency_s * 1000,
        "peak memory (MB)": r.peak_mb, "trainable params": r.trainable_params, "examples used": r.train_examples,
        "held out": r.test_examples, "prompt tokens / item": r.params.get("prompt_tokens_per_item"),
        "$ per 1,000 items": per_thousand_usd(r),
    } for r in (results[arm] for arm in ARMS if arm in results)]
