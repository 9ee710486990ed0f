"""What a Fine-tune run trains, and where: the chosen arms and curves as :class:`~core.finetune.jobs.Step` s, run in
this server's threads, or, with ``UBT_RAY_ADDRESS`` set, as Ray tasks where an arm can run there
(:mod:`core.finetune.ray_backend`). Every finished arm is recorded in the run store."""
from __future__ import annotations

import logging
from typing import Any

from core.config import get_settings
from core.finetune import arms
from core.finetune.jobs import SLOT, Job, Step, TrainingSlot
from core.finetune.record import record_arm
from core.progress import OnProgress, ShouldStop

log = logging.getLogger(__name__)


def training_steps(data, train_idx, test_idx, chosen: dict[str, Any], label_curve: bool = False,
                   prompt_curve: bool = False) -> list[Step]:
    """Steps for the chosen arms, in the order of :data:`arms.ARMS`, plus the label-efficiency curves.

    Args:
        data: LabelledData.
        train_idx: training items of the split.
        test_idx: held-out items of the split.
        chosen: {arm name: its settings dataclass}.
        label_curve: add the label-efficiency step (needs the transfer and zero-shot settings).
        prompt_curve: add the prompt arm's examples-per-class curve (k = 0, 1, 2, 4, 8; needs its settings).

    Returns:
        The steps; the prompt arm, arms 3 and 4 and the prompt curve are heavy.
    """
    steps, prompted = [], {}  # prompted: the prompt arm's result by k, which its curve reuses

    def run(arm: str, on_progress: OnProgress, should_stop: ShouldStop):
        result = arms.run_arm(arm, data, train_idx, test_idx, chosen[arm], on_progress, should_stop)
        if arm == "prompt" and not result.stopped:
            prompted[result.params["per_class_asked"]] = result
        return result

    for arm in arms.ARMS:
        if arm in chosen:
            steps.append(Step(arm, arms.TITLES[arm], arm in arms.HEAVY,
                              lambda on_progress, should_stop, arm=arm: run(arm, on_progress, should_stop)))
    if label_curve:
        transfer, zero_shot = arms.label_curve_settings(chosen)
        steps.append(Step(arms.LABEL_CURVE, arms.LABEL_CURVE_TITLE, False,
                          lambda on_progress, should_stop: arms.label_efficiency(data, train_idx, test_idx, transfer,
                                                                                 zero_shot)))
    if prompt_curve:
        prompt = chosen.get("prompt", arms.PromptSettings())
        title = f"Examples in the prompt (k = {', '.join(map(str, arms.PROMPT_STEPS))} per class)"
        steps.append(Step("prompt-curve", title, True,
                          lambda on_progress, should_stop: arms.prompt_curve(data, train_idx, test_idx, prompt,
                                                                             on_progress, should_stop, prompted)))
    return steps


def start_training(data, train_idx, test_idx, chosen: dict[str, Any], session_id: str | None = None,
                   label_curve: bool = False, slot: TrainingSlot = SLOT, prompt_curve: bool = False,
                   ray_address: str | None = None) -> Job:
    """Start a job running the chosen arms (and the curves asked for, see :func:`training_steps`); every finished
    arm is recorded in the run store.

    With a Ray cluster (``ray_address``, by default ``UBT_RAY_ADDRESS``) the arms run as Ray tasks there; when it
    cannot be reached the job says so in one note and runs in this process.

    Args:
        data: LabelledData.
        train_idx: training items of the split.
        test_idx: held-out items of the split.
        chosen: {arm name: its settings dataclass}.
        session_id: the session whose runs these are.
        label_curve: add the label-efficiency step.
        slot: the server-wide slot heavy in-process steps take.
        prompt_curve: add the prompt arm's examples-per-class curve.
        ray_address: a Ray cluster's address; None reads the settings, empty runs in this process.

    Returns:
        The started Job.
    """
    def record(name: str, result: Any) -> None:
        if isinstance(result, arms.ArmResult):
            record_arm(result, data, session_id)

    steps = training_steps(data, train_idx, test_idx, chosen, label_curve, prompt_curve)
    address = get_settings().ray_address if ray_address is None else ray_address
    if not address:
        return Job(steps, slot, record).start()
    from core.finetune import ray_backend

    try:
        plan = ray_backend.plan(address, data, train_idx, test_idx, chosen, label_curve)
    except ray_backend.Unreachable as err:
        note = f"{err} Training on this server instead."
        log.warning("%s", note)
        return Job(steps, slot, record, notes=[note]).start()
    remote = {step.name: step for step in plan.steps}  # the arms a Ray task can run; the others stay here
    return Job([remote.get(step.name, step) for step in steps], slot, record, backend=plan.backend,
               on_end=plan.close).start()
