"""Label efficiency: held-out accuracy against labelled examples per class, for the transfer head and for
zero-shot (which uses no labels, so its line is flat); and the prompt arm's examples-per-class curve, the same
examples put in a prompt instead of training a head."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np

from core.finetune import features as feats
from core.finetune.arms.base import (APPROACHES, DEFAULT_TEMPLATE, ArmResult, TransferSettings, ZeroShotSettings,
                                     encoder_for, labels_of, score)
from core.finetune.arms.prompt import PromptSettings, run_prompt
from core.finetune.arms.transfer import fit_head, subsample
from core.finetune.arms.zero_shot import zero_shot_predict
from core.progress import OnProgress, Progress, ShouldStop, ignore, never

DRAWS = 5  # random draws of the examples per point of the label-efficiency curve
PROMPT_STEPS = (0, 1, 2, 4, 8)  # examples per class in the prompt arm's curve
LABEL_CURVE = "label-efficiency"  # the label-efficiency curve's step name in a training job
LABEL_CURVE_TITLE = f"Label efficiency (head refitted per size, {DRAWS} draws each)"


def label_curve_settings(chosen: dict) -> tuple[TransferSettings, ZeroShotSettings]:
    """The (transfer, zero-shot) settings the label-efficiency curve uses: the chosen ones, else the defaults."""
    return chosen.get("transfer", TransferSettings()), chosen.get("zero-shot", ZeroShotSettings())


def examples_per_class_steps(train_labels: Sequence[str]) -> list[int]:
    """1, 2, 4, 8 ... up to the smallest class's count in the training set (which is always included)."""
    smallest = min(np.unique(np.asarray(train_labels), return_counts=True)[1])
    steps = [2**i for i in range(int(math.log2(smallest)) + 1)]
    return steps if steps[-1] == smallest else steps + [int(smallest)]


def label_efficiency(data, train_idx, test_idx, transfer: TransferSettings, zero_shot: ZeroShotSettings,
                     draws: int = DRAWS) -> list[dict]:
    """Held-out accuracy against labelled examples per class, for the head and for zero-shot (flat).

    Cheap: the features come from the cache; only the head is refitted, for each size and each of ``draws``
    random draws of the examples (seeds 0, 1 ...), so the chart can show how much the pick of examples matters.

    Returns:
        Rows ``{examples_per_class, train_examples, approach, seed, accuracy}``; zero-shot, which uses no
        labels, has one row per size (seed 0).
    """
    key = encoder_for(transfer, data)
    labels = data.classes()
    train = feats.features_for(data, train_idx, key)
    test = feats.features_for(data, test_idx, key)
    y_test = labels_of(data, test_idx)
    position = {index: row for row, index in enumerate(train_idx)}
    zero_key = encoder_for(zero_shot, data)
    zero_test = test if zero_key == key else feats.features_for(data, test_idx, zero_key)
    zero_pred, _ = zero_shot_predict(zero_test, zero_key, zero_shot.template or DEFAULT_TEMPLATE[data.kind], labels)
    zero_accuracy = score(y_test, zero_pred, labels)[0]
    rows = []
    for per_class in examples_per_class_steps(labels_of(data, train_idx)):
        for seed in range(draws):
            used = subsample(data, train_idx, per_class, seed)
            head = fit_head(train.values[[position[i] for i in used]], labels_of(data, used), transfer.c, key)
            predicted = [head.labels[i] for i in head.predict_proba(test.values).argmax(axis=1)]
            rows.append({"examples_per_class": per_class, "train_examples": len(used), "approach": APPROACHES["transfer"],
                         "seed": seed, "accuracy": score(y_test, predicted, labels)[0]})
        rows.append({"examples_per_class": per_class, "train_examples": len(used), "approach": APPROACHES["zero-shot"],
                     "seed": 0, "accuracy": zero_accuracy})
    return rows


def prompt_curve(data, train_idx, test_idx, settings: PromptSettings, on_progress: OnProgress = ignore,
                 should_stop: ShouldStop = never, done: dict[int, ArmResult] | None = None) -> list[dict]:
    """The prompt arm's held-out accuracy, with its 95% interval, for k = 0, 1, 2, 4, 8 examples per class: as
    many as the smallest class has and as fit the model's context (a k that did not fit ends the curve).

    Args:
        data, train_idx, test_idx: as for every arm.
        settings: the prompt arm's settings; ``per_class`` is replaced by each k.
        on_progress: told after each held-out item of each k (``done`` counts items over all ks).
        should_stop: asked between items; True ends the curve with the ks finished.
        done: results already computed, by k (the arm's own run), reused instead of run again.

    Returns:
        Rows ``{examples_per_class, train_examples, approach, seed, accuracy, accuracy_low, accuracy_high}``,
        one per k (the prompt is deterministic: one draw).
    """
    smallest = min(np.unique(np.asarray(labels_of(data, train_idx)), return_counts=True)[1])
    steps = [k for k in PROMPT_STEPS if k <= smallest]
    done, rows = dict(done or {}), []
    for position, k in enumerate(steps):
        if should_stop():
            break

        def report(update: Progress, position: int = position, k: int = k) -> None:
            total = update.total * len(steps)
            on_progress(Progress(position * update.total + update.done, total, f"k = {k}: {update.message}",
                                 update.elapsed_s))

        result = done.get(k) or run_prompt(data, train_idx, test_idx, replace(settings, per_class=k), report,
                                           should_stop)
        if result.stopped:
            break
        fitted = result.params.get("per_class", k)
        if fitted < k:  # it did not fit: a larger k would not either
            break
        low, high = result.interval()
        rows.append({"examples_per_class": k, "train_examples": result.train_examples, "approach": APPROACHES["prompt"],
                     "seed": 0, "accuracy": result.accuracy, "accuracy_low": low, "accuracy_high": high})
    return rows
