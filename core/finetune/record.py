"""The run record: an arm's settings and figures (never the data) stored in the run store, kind ``training``."""
from __future__ import annotations

from core.finetune.arms import TASKS, ArmResult


def record_arm(result: ArmResult, data, session_id: str | None = None) -> None:
    """Store an arm's settings and figures (never the data) in the run store, kind ``training``."""
    from core import runs

    runs.record_run(
        page="fine-tune", task=TASKS[data.kind], model=result.model, source=result.source, device=result.device,
        approach=result.approach, kind="training", load_s=result.load_s, wall_s=result.train_s, peak_mb=result.peak_mb,
        params={k: v for k, v in result.params.items() if v is not None} | {
            "train_examples": result.train_examples, "test_examples": result.test_examples, "classes": len(result.labels),
        },
        metrics=result.metrics(), data_fingerprint=data.fingerprint, data_source=data.source, session_id=session_id,
        api_cost_usd=result.params.get("cost_usd"),
        engine=result.params.get("engine"), number_format=result.params.get("number_format"),
    )
