"""Run one arm by name: the one entry point the jobs and the page use."""
from __future__ import annotations

from core.finetune.arms.api import run_api
from core.finetune.arms.base import ArmResult
from core.finetune.arms.fine_tune import run_fine_tune
from core.finetune.arms.from_scratch import run_from_scratch
from core.finetune.arms.prompt import run_prompt
from core.finetune.arms.transfer import run_transfer
from core.finetune.arms.zero_shot import run_zero_shot
from core.progress import OnProgress, ShouldStop, ignore, never

RUNNERS = {"zero-shot": run_zero_shot, "prompt": run_prompt, "transfer": run_transfer, "fine-tune": run_fine_tune, "scratch": run_from_scratch,
           "api": run_api}


def run_arm(arm: str, data, train_idx, test_idx, settings, on_progress: OnProgress = ignore,
            should_stop: ShouldStop = never) -> ArmResult:
    """Run one arm by name (see :data:`~core.finetune.arms.base.ARMS`) with its settings dataclass.

    Args:
        arm: the arm's name.
        data: LabelledData.
        train_idx: training items of the split.
        test_idx: held-out items of the split.
        settings: the arm's settings dataclass (``ApiSettings`` for ``api``, ``PromptSettings`` for ``prompt``).
        on_progress: told how the arm is getting on (training arms: after every step and epoch).
        should_stop: asked between units of work; True ends the arm early, scored as it is.
    """
    return RUNNERS[arm](data, list(train_idx), list(test_idx), settings, on_progress, should_stop)
