"""Arm 1, "use as is": texts by cosine similarity of sentence embeddings to a sentence made from each label;
images by CLIP zero-shot with the class names. Nothing is trained."""
from __future__ import annotations

import time

import numpy as np

from core.device import choose_device
from core.errors import InputError, ModelUnavailable
from core.finetune import features as feats
from core.finetune.arms.base import (APPROACHES, DEFAULT_TEMPLATE, ArmResult, ZeroShotSettings, correct_of,
                                     encoder_for, labels_of, score)
from core.measure import measured
from core.progress import OnProgress, ShouldStop, ignore, never


def label_prompts(template: str, labels: list[str]) -> list[str]:
    """One sentence per class from a template holding ``{label}``.

    Raises:
        InputError: when the template has no ``{label}``.
    """
    if "{label}" not in template:
        raise InputError("The zero-shot template must contain {label}, e.g. 'This text is about {label}.'")
    return [template.replace("{label}", label) for label in labels]


def prompt_features(key: str, prompts: list[str]) -> np.ndarray:
    """Features of the label sentences, by encoder ``key`` (a sentence encoder, or CLIP's text tower)."""
    if feats.encoder_kind(key) == "text":
        return feats.encode_texts(key, prompts)[0]
    from core import registry, vision

    try:
        return np.asarray(vision.text_features(registry.load(key), prompts), np.float32)
    except ModelUnavailable as err:
        raise feats.clip_unavailable(err, key) from None


def zero_shot_predict(test: feats.Features, key: str, template: str, labels: list[str]) -> tuple[list[str], float]:
    """Pick, for each feature row, the label whose prompt is most similar (cosine).

    Returns:
        The predicted labels and the seconds spent embedding the prompts.
    """
    start = time.perf_counter()
    prompts = prompt_features(key, label_prompts(template, labels))
    prompt_s = time.perf_counter() - start
    similarity = test.values @ prompts.T
    return [labels[i] for i in similarity.argmax(axis=1)], prompt_s


def run_zero_shot(data, train_idx, test_idx, settings: ZeroShotSettings, on_progress: OnProgress = ignore,
                  should_stop: ShouldStop = never) -> ArmResult:
    """Arm 1: no training; compare each held-out item with the class names.

    Args:
        data: LabelledData.
        train_idx: unused (the arm learns nothing), kept for one signature across arms.
        test_idx: held-out items.
        settings: encoder and template.
        on_progress: not called (nothing to report).
        should_stop: not checked (one short pass).

    Returns:
        ArmResult; ``train_s`` is the time to embed the label sentences.
    """
    key = encoder_for(settings, data)
    template = settings.template or DEFAULT_TEMPLATE[data.kind]
    labels = data.classes()
    with measured() as timing:
        test = feats.features_for(data, test_idx, key)
        start = time.perf_counter()
        predicted, prompt_s = zero_shot_predict(test, key, template, labels)
        compare_s = time.perf_counter() - start - prompt_s
    accuracy, macro_f1, confusion = score(labels_of(data, test_idx), predicted, labels)
    notes = [f"No training: each held-out item is matched to the closest of {len(labels)} label sentences "
             f"(“{label_prompts(template, labels[:1])[0]}” ...)."]
    if test.cached:
        notes.append(f"Held-out features came from the cache (computed earlier in {test.seconds:.2f} s).")
    return ArmResult(
        arm="zero-shot", approach=APPROACHES["zero-shot"], model=key, source=test.source, device=choose_device().label(),
        labels=labels, accuracy=accuracy, macro_f1=macro_f1, confusion=confusion, train_s=prompt_s,
        latency_s=(test.seconds + compare_s) / len(test_idx), peak_mb=timing.peak_mb, trainable_params=0,
        train_examples=0, test_examples=len(test_idx), load_s=test.load_s,
        params={"encoder": key, "engine": feats.encoder_engine(key), "number_format": feats.encoder_number_format(key), "template": template}, notes=notes,
        correct=correct_of(data, test_idx, predicted),
    )
