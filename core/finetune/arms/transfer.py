"""Arm 2, "transfer learning": frozen encoder features (cached) + a logistic-regression head."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from core.device import choose_device
from core.finetune import features as feats
from core.finetune.arms.base import APPROACHES, ArmResult, TransferSettings, correct_of, encoder_for, labels_of, score
from core.heads import LinearHead
from core.measure import measured
from core.progress import OnProgress, ShouldStop, ignore, never


def fit_head(values: np.ndarray, y: list[str], c: float, key: str, record: dict | None = None) -> LinearHead:
    """Fit a logistic-regression head on features and wrap it as a LinearHead."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000).fit(values, y)
    return LinearHead.from_sklearn(model, [str(label) for label in model.classes_], key, record or {})


def subsample(data, train_idx: Sequence[int], per_class: int | None, seed: int) -> list[int]:
    """``per_class`` training items of each class (seeded), or all of them when ``per_class`` is None."""
    if per_class is None:
        return list(train_idx)
    from core.finetune import data as data_module

    return list(data_module.subsample_per_class(list(train_idx), data.labels, per_class, seed=seed))


def run_transfer(data, train_idx, test_idx, settings: TransferSettings, on_progress: OnProgress = ignore,
                 should_stop: ShouldStop = never) -> ArmResult:
    """Arm 2: frozen encoder features (cached) + a logistic-regression head.

    Args:
        data: LabelledData.
        train_idx: training items (all of them are embedded, so the features are shared).
        test_idx: held-out items.
        settings: encoder, regularisation, examples per class.
        on_progress: not called (one short fit).
        should_stop: not checked.

    Returns:
        ArmResult with ``head`` set; ``train_s`` = time to embed the training items + head fit.
    """
    key = encoder_for(settings, data)
    labels = data.classes()
    used = subsample(data, train_idx, settings.per_class, settings.seed)
    position = {index: row for row, index in enumerate(train_idx)}
    with measured() as timing:
        train = feats.features_for(data, train_idx, key)
        start = time.perf_counter()
        head = fit_head(train.values[[position[i] for i in used]], labels_of(data, used), settings.c, key)
        head_s = time.perf_counter() - start
        test = feats.features_for(data, test_idx, key)
        start = time.perf_counter()
        probs = head.predict_proba(test.values)
        predict_s = time.perf_counter() - start
    predicted = [head.labels[i] for i in probs.argmax(axis=1)]
    accuracy, macro_f1, confusion = score(labels_of(data, test_idx), predicted, labels)
    train_s = train.seconds + head_s
    head.record = {
        "approach": APPROACHES["transfer"], "train_examples": len(used), "held_out_examples": len(test_idx),
        "held_out_accuracy": round(accuracy, 4), "held_out_macro_f1": round(macro_f1, 4), "c": settings.c,
        "encoder_source": train.source, "train_s": round(train_s, 3), "data_fingerprint": data.fingerprint,
    }
    notes = [f"Head fit in {head_s * 1000:.0f} ms on {len(used)} examples."]
    for name, part in (("Training", train), ("Held-out", test)):
        if part.cached:
            notes.append(f"{name} features came from the cache (computed earlier in {part.seconds:.2f} s).")
    return ArmResult(
        arm="transfer", approach=APPROACHES["transfer"], model=key, source=train.source, device=choose_device().label(),
        labels=labels, accuracy=accuracy, macro_f1=macro_f1, confusion=confusion, train_s=train_s,
        latency_s=(test.seconds + predict_s) / len(test_idx), peak_mb=timing.peak_mb,
        trainable_params=int(head.weight.size + head.bias.size), train_examples=len(used), test_examples=len(test_idx),
        load_s=train.load_s if train.load_s is not None else test.load_s,
        params={"encoder": key, "engine": feats.encoder_engine(key), "number_format": feats.encoder_number_format(key), "c": settings.c, "per_class": settings.per_class or 0},
        notes=notes, head=head,
        correct=correct_of(data, test_idx, predicted),
    )
