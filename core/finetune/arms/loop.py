"""The training loop of arms 3 (fine-tune) and 4 (the from-scratch CNN): one function, top to bottom.

:func:`train` runs shuffled mini-batch epochs on capped threads and is the one place that decides when
training ends: the Stop button (``should_stop``), the time budget, the epoch cap, or early stopping when
the validation loss (on training items set aside, never the held-out ones) has not fallen for
``patience`` epochs. It keeps the weights of the lowest validation loss and goes back to them at the
end, so validation picks the model that is scored; the held-out accuracy after every epoch is for the
curve only.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from core.device import choose_device
from core.finetune.arms.base import score
from core.measure import measured
from core.precision import Decision, TrainingProbe, decide_training
from core.progress import OnProgress, Progress, ShouldStop, ignore, never

MIN_IMPROVEMENT = 1e-4  # a validation loss must fall by more than this to count as lower
MIN_PER_CLASS_TO_VALIDATE = 4  # fewer training items in a class: no validation slice, no early stopping
MIN_VALIDATION_ITEMS = 20  # a smaller slice gives a validation loss too noisy to stop on or to pick weights by
# Patience is at least this many optimiser steps: on a few dozen images an epoch is one or two steps, and the
# validation loss of a network learning from scratch wanders for a while before it falls.
MIN_PATIENCE_STEPS = 100
VALIDATION_BATCH = 256


def training_threads() -> int:
    """Torch threads for training (see DeviceChoice.training_threads)."""
    return choose_device().training_threads


def training_device(decision: Decision | None = None) -> str:
    """Device label of arms 3 and 4: float32, or ``bf16 autocast`` where :func:`autocast_decision` chose it."""
    number = "bf16 autocast" if decision is not None and decision.bf16 else "float32"
    return f"{choose_device().device} · {number} · {training_threads()} thread(s)"


PROBE_ITEMS = 256  # training items a training probe fits on, for two epochs per format


def autocast_decision(name: str, build: Callable[[], tuple], fit_rows: list[int], labels: list[str],
                      test_labels: list[str], batch_size: int, cpu=None, on_progress: OnProgress = ignore) -> Decision:
    """Whether an arm trains under bf16 autocast here (see :func:`core.precision.decide_training`).

    Where the CPU has native bf16 and nothing overrides it, the first run of the arm on a machine trains two fresh
    copies (``build()``) for two epochs on up to :data:`PROBE_ITEMS` training items, one in float32 and one with
    autocast, times the second epoch and scores the held-out items; the verdict is cached for the machine.

    Args:
        name: the arm and model (the cache's name).
        build: makes ``(modules, optimiser, loss_of, predict)`` afresh, seeded, as the arm trains them.
        fit_rows, labels, test_labels, batch_size: as for :func:`train`.
        cpu: the CPU to decide for (tests inject recorded ones); None: this machine's.
        on_progress: told when a probe runs (it takes a few seconds, once per machine).

    Returns:
        The Decision; ``bf16`` means: pass ``autocast=True`` to :func:`train`.
    """
    import torch

    def epoch(autocast: bool) -> tuple[float, int, int]:
        on_progress(Progress(0.0, 1.0, "Trying bf16 autocast against float32 on this CPU (once per machine): "
                                       f"{'bf16' if autocast else 'float32'} ...", 0.0))
        _, optimiser, loss_of, predict = build()
        rows, seconds = fit_rows[:PROBE_ITEMS], 0.0
        torch.set_num_threads(training_threads())
        try:
            for _ in range(2):
                started = time.perf_counter()
                for b in range(0, len(rows), batch_size):
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                        loss = loss_of(rows[b : b + batch_size], True)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                seconds = time.perf_counter() - started
            hits = sum(labels[i] == truth for i, truth in zip(predict(), test_labels))
        finally:
            torch.set_num_threads(choose_device().threads)
        return seconds, int(hits), len(test_labels)

    return decide_training(TrainingProbe(name, epoch), cpu=cpu, device=choose_device().device)


def adamw(params, **options):
    """AdamW with its fused kernel (one pass over all parameters per step, CPU and CUDA): on the small CNN
    an epoch is about 9% shorter than with the default per-tensor loop; the update rule is the same."""
    import torch

    return torch.optim.AdamW(params, fused=True, **options)


def validation_slice(train_labels: Sequence[str], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Set a stratified slice of the training items aside to validate on (early stopping).

    Args:
        train_labels: labels of the training items, in order.
        share: the share of each class set aside (at least one item each).
        seed: the random seed.

    Returns:
        (positions to train on, positions to validate on), each sorted; nothing is set aside when a class
        has fewer than :data:`MIN_PER_CLASS_TO_VALIDATE` training items, or when the slice would hold fewer
        than :data:`MIN_VALIDATION_ITEMS`.
    """
    by_class: dict[str, list[int]] = {}
    for position, label in enumerate(train_labels):
        by_class.setdefault(label, []).append(position)
    if not by_class or min(map(len, by_class.values())) < MIN_PER_CLASS_TO_VALIDATE:
        return list(range(len(train_labels))), []
    rng = np.random.default_rng(seed)
    held = {int(p) for label in sorted(by_class)
            for p in rng.permutation(by_class[label])[: max(1, round(share * len(by_class[label])))]}
    if len(held) < MIN_VALIDATION_ITEMS:
        return list(range(len(train_labels))), []
    return [p for p in range(len(train_labels)) if p not in held], sorted(held)


def early_stopping(train_labels: Sequence[str], settings) -> tuple[list[int], list[int], int | None]:
    """Which training positions to fit on and which to validate on, and the patience in epochs.

    With ``settings.patience`` a stratified ``settings.validation_share`` of the training items is set aside.
    Patience counts epochs, and at least :data:`MIN_PATIENCE_STEPS` steps; when the epoch cap comes first,
    nothing is set aside. Without ``settings.patience``: every position fits, none validates, patience None.
    """
    fit_rows, val_rows, patience = list(range(len(train_labels))), [], None
    if settings.patience is not None:
        fit, val = validation_slice(train_labels, settings.validation_share, settings.seed)
        patience = max(settings.patience, math.ceil(MIN_PATIENCE_STEPS / math.ceil(len(fit) / settings.batch_size)))
        if val and settings.epochs > patience:
            fit_rows, val_rows = fit, val
    return fit_rows, val_rows, patience


@dataclass
class Trained:
    """What :func:`train` did and measured.

    Attributes:
        curve: a point per step ``{step, epoch, loss, accuracy, val_loss}``; held-out accuracy at the start and
            after every epoch, validation loss after every epoch.
        steps: optimiser steps done.
        stopped_by: ``stop``, ``budget``, ``plateau`` (early stopping) or ``epochs`` (the cap).
        epochs: epochs trained, fractional when cut short.
        best_epoch: where the validation loss was lowest (the weights kept), None without validation.
        patience: epochs without a lower validation loss before training stops (None: early stopping off).
        validation_items: training items set aside to validate on.
        train_s, latency_s, peak_mb: training seconds, inference seconds per held-out item, peak memory.
        accuracy, macro_f1, confusion, correct: the held-out scores of the model that was kept.
    """

    curve: list[dict]
    steps: int
    stopped_by: str
    epochs: float
    best_epoch: float | None
    patience: int | None
    validation_items: int
    train_s: float
    latency_s: float
    peak_mb: float
    accuracy: float
    macro_f1: float
    confusion: np.ndarray
    correct: list[bool]

    def result_fields(self) -> dict:
        """The ArmResult fields that training measured."""
        return {
            "accuracy": self.accuracy, "macro_f1": self.macro_f1, "confusion": self.confusion,
            "train_s": self.train_s, "latency_s": self.latency_s, "peak_mb": self.peak_mb,
            "curve": self.curve, "correct": self.correct, "stopped_by": self.stopped_by,
            "stopped": self.stopped_by in ("stop", "budget"),
        }

    def stop_note(self, settings) -> list[str]:
        """What ended training, and which weights were scored."""
        done = f"{self.steps} steps ({self.epochs:g} epochs)"
        ended = {
            "stop": f"Stopped by the user after {done}.",
            "budget": f"Reached the {settings.time_budget_s:g} s time budget after {done}.",
            "plateau": f"Early stopping: the validation loss had not fallen for {self.patience} epochs, so training "
                       f"ended after {done}, within the {settings.time_budget_s:g} s budget.",
            "epochs": f"Trained the full {settings.epochs} epochs (the cap), {self.steps} steps.",
        }[self.stopped_by]
        if not self.validation_items:
            why = ("early stopping is off" if self.patience is None else
                   f"the {settings.epochs}-epoch cap comes before a patience of {self.patience} epochs"
                   if settings.epochs <= self.patience else
                   f"too few training examples to set {MIN_VALIDATION_ITEMS} aside with every class in them")
            return [f"{ended} No validation slice ({why}): it trained on every training example until the epoch cap, "
                    "the budget or Stop; the scores are for the model at that point."]
        return [f"{ended} Validation: {self.validation_items} training examples set aside (never the held-out ones); "
                f"the scores are for the weights of epoch {self.best_epoch:g}, where the validation loss was lowest."]


def train(*, modules: list, optimiser, loss_of: Callable[[list[int], bool], Any], predict: Callable[[], np.ndarray],
          labels: list[str], test_labels: list[str], fit_rows: list[int], val_rows: list[int], patience: int | None,
          settings, on_progress: OnProgress = ignore, should_stop: ShouldStop = never,
          clock: Callable[[], float] = time.perf_counter, autocast: bool = False) -> Trained:
    """Train ``modules`` with ``optimiser`` on ``loss_of(rows, True)``, then score ``predict()`` on the held-out items.

    Args:
        modules: the torch modules that train; their trainable parameters and buffers are the checkpoint.
        optimiser: steps the modules' parameters.
        loss_of: ``loss_of(positions, training)``: the mean loss on those training-set positions, as a tensor
            (``training`` False: in eval mode, on the validation slice).
        predict: class indices of the held-out items, in order, for the model as it is now.
        labels: class names (``predict``'s indices point into them).
        test_labels: the held-out items' labels, in order.
        fit_rows: training-set positions to train on (see :func:`early_stopping`).
        val_rows: positions to validate on; empty: no early stopping, no checkpoint.
        patience: epochs without a lower validation loss before training stops.
        settings: ``batch_size``, ``epochs``, ``time_budget_s`` and ``seed``.
        on_progress: told after every step and every epoch; ``done`` is the larger of the steps done and the
            budget used, of ``total`` 1.
        should_stop: checked before every step.
        clock: seconds, for the time budget.
        autocast: compute the losses (forward passes) under bf16 autocast (see :func:`autocast_decision`); the
            weights, the optimiser and the held-out predictions stay float32.

    Returns:
        :class:`Trained`.
    """
    import torch

    batch_size, epochs, budget_s = settings.batch_size, settings.epochs, settings.time_budget_s
    checkpointed = [t for module in modules
                    for t in [p for p in module.parameters() if p.requires_grad] + list(module.buffers())]
    best_weights: list = []
    with measured() as timing:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(settings.seed)
        per_epoch = math.ceil(len(fit_rows) / batch_size)
        total = max(epochs * per_epoch, 1)
        best, best_epoch, stale, done, stopped_by = math.inf, None, 0, 0, ""
        torch.set_num_threads(training_threads())
        try:
            start = clock()
            # held-out accuracy before training, for the curve
            accuracy = float(np.mean([labels[i] == truth for i, truth in zip(predict(), test_labels)]))
            curve = [{"step": 0, "epoch": 0.0, "loss": None, "accuracy": accuracy, "val_loss": None}]
            on_progress(Progress(0.0, 1.0, "Held-out accuracy before training", 0.0,
                                 metrics={"step": 0, "epoch": 0.0, "accuracy": accuracy}))
            for epoch in range(epochs):
                order = torch.randperm(len(fit_rows), generator=generator).tolist()
                for b in range(per_epoch):
                    if should_stop():
                        stopped_by = "stop"
                    elif clock() - start > budget_s:
                        stopped_by = "budget"
                    if stopped_by:
                        break
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                        loss = loss_of([fit_rows[i] for i in order[b * batch_size : (b + 1) * batch_size]], True)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    loss = float(loss.detach())
                    done += 1
                    where = epoch + (b + 1) / per_epoch
                    curve.append({"step": done, "epoch": round(where, 3), "loss": loss, "accuracy": None, "val_loss": None})
                    now = clock() - start
                    on_progress(Progress(min(max(done / total, now / max(budget_s, 1e-9)), 1.0), 1.0,
                                         f"Epoch {epoch + 1} (at most {epochs}), step {done}", now,
                                         metrics={"step": done, "epoch": where, "loss": loss}))
                point = curve[-1]
                if point["accuracy"] is not None:  # stopped before this epoch's first step
                    break
                # end of the epoch: held-out accuracy (the curve only), then the validation loss (early stopping)
                point["accuracy"] = accuracy = float(np.mean([labels[i] == truth
                                                              for i, truth in zip(predict(), test_labels)]))
                message = f"Epoch {epoch + 1} ended: held-out accuracy {accuracy:.1%}"
                if val_rows:
                    with torch.inference_mode():
                        chunks = [val_rows[s : s + VALIDATION_BATCH] for s in range(0, len(val_rows), VALIDATION_BATCH)]
                        point["val_loss"] = sum(float(loss_of(rows, False)) * len(rows) for rows in chunks) / len(val_rows)
                    stale += 1
                    if point["val_loss"] < best - MIN_IMPROVEMENT:  # the best so far: keep these weights
                        best, best_epoch, stale = point["val_loss"], point["epoch"], 0
                        best_weights = [t.detach().clone() for t in checkpointed]
                    message += f", validation loss {point['val_loss']:.4f} (lowest {best:.4f}, epoch {best_epoch:g})"
                    if not stopped_by and stale >= patience:
                        stopped_by = "plateau"
                now = clock() - start
                metrics = {"step": done, "epoch": point["epoch"], "loss": point["loss"], "accuracy": accuracy,
                           "val_loss": point["val_loss"]}
                on_progress(Progress(min(max(done / total, now / max(budget_s, 1e-9)), 1.0), 1.0, message, now,
                                     metrics={k: v for k, v in metrics.items() if v is not None}))
                if stopped_by:
                    break
            if best_epoch is not None and best_epoch != curve[-1]["epoch"]:  # back to the weights kept
                with torch.no_grad():
                    for tensor, kept in zip(checkpointed, best_weights):
                        tensor.copy_(kept)
        finally:
            torch.set_num_threads(choose_device().threads)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        predicted = [labels[i] for i in predict()]
        latency_s = (time.perf_counter() - started) / len(test_labels)
    accuracy, macro_f1, confusion = score(test_labels, predicted, labels)
    return Trained(curve=curve, steps=done, stopped_by=stopped_by or "epochs", epochs=curve[-1]["epoch"],
                   best_epoch=best_epoch, patience=patience, validation_items=len(val_rows), train_s=train_s,
                   latency_s=latency_s, peak_mb=timing.peak_mb, accuracy=accuracy, macro_f1=macro_f1,
                   confusion=confusion, correct=[p == truth for p, truth in zip(predicted, test_labels)])
