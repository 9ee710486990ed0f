"""Arm 4, "from scratch": no pretrained weights. TF-IDF + logistic regression for texts (one fit to
convergence), a small CNN on the raw pixels for images (trained by :func:`core.finetune.arms.loop.train`)."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Sequence

import numpy as np

from core.device import choose_device
from core.finetune.arms.loop import adamw, autocast_decision, early_stopping, train, training_device
from core.finetune.arms.base import (APPROACHES, SCRATCH_MODELS, ArmResult, ScratchSettings, correct_of, labels_of,
                                     score, trainable)
from core.measure import measured
from core.progress import OnProgress, Progress, ShouldStop, ignore, never


def images_to_array(images: Sequence, size: int, channels: int) -> np.ndarray:
    """PIL images as float32 pixels in [0, 1], shape (n, channels, size, size)."""
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(image.convert(mode).resize((size, size)), np.float32) / 255.0 for image in images]
    stacked = np.stack(arrays)
    return stacked[:, None] if channels == 1 else stacked.transpose(0, 3, 1, 2)


def small_cnn(channels: int, classes: int):
    """Two conv blocks and a small classifier (~40k parameters for 10 classes), for any input >= 8 px."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, classes),
    )


def scratch_text(data, train_idx, test_idx, settings: ScratchSettings, on_progress: OnProgress = ignore) -> ArmResult:
    """TF-IDF of character 2- to 5-grams + logistic regression, fitted in one go on the training texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from core import runs

    labels = data.classes()
    with measured() as timing:
        start = time.perf_counter()
        vectoriser = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
        classifier = LogisticRegression(max_iter=2000)
        classifier.fit(vectoriser.fit_transform([data.items[i] for i in train_idx]), labels_of(data, train_idx))
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        predicted = list(classifier.predict(vectoriser.transform([data.items[i] for i in test_idx])))
        latency_s = (time.perf_counter() - start) / len(test_idx)
    accuracy, macro_f1, confusion = score(labels_of(data, test_idx), predicted, labels)
    on_progress(Progress(1.0, 1.0, "TF-IDF + logistic regression fitted",
                         metrics={"step": 1, "epoch": 1.0, "accuracy": accuracy}))
    return ArmResult(
        arm="scratch", approach=APPROACHES["scratch"], model=SCRATCH_MODELS["text"], source="none",
        device="cpu · scikit-learn", labels=labels, accuracy=accuracy, macro_f1=macro_f1, confusion=confusion,
        train_s=train_s, latency_s=latency_s, peak_mb=timing.peak_mb,
        trainable_params=int(classifier.coef_.size + classifier.intercept_.size), train_examples=len(train_idx),
        test_examples=len(test_idx), params={"vocabulary": len(vectoriser.vocabulary_), "char_ngrams": "2-5",
                                             "engine": runs.SKLEARN_ENGINE},
        notes=[f"TF-IDF of character 2- to 5-grams (a vocabulary of {len(vectoriser.vocabulary_):,} learnt from the "
               "training texts only; robust to typos and any language), then logistic regression: no pretrained "
               "knowledge at all."],
        curve=[{"step": 1, "epoch": 1.0, "loss": None, "accuracy": accuracy}],
        correct=correct_of(data, test_idx, predicted),
    )


def scratch_images(data, train_idx, test_idx, settings: ScratchSettings, on_progress: OnProgress = ignore,
                   should_stop: ShouldStop = never) -> ArmResult:
    """A small CNN from random weights on the pixels (grey images as one channel), normalised by the training set."""
    import torch

    labels = data.classes()
    device = choose_device()
    native = max(max(image.size) for image in data.items)
    size = settings.image_size or min(32, max(8, native))
    pixels = images_to_array(data.items, size, 3)
    channels = 1 if np.array_equal(pixels[:, :1].repeat(3, axis=1), pixels) else 3  # grey images: one channel
    pixels = pixels[:, :channels]
    mean = pixels[list(train_idx)].mean(axis=(0, 2, 3), keepdims=True)
    std = pixels[list(train_idx)].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    pixels = torch.from_numpy((pixels - mean) / std)
    x_train, x_test = pixels[list(train_idx)].to(device.device), pixels[list(test_idx)].to(device.device)
    y_train = torch.tensor([labels.index(data.labels[i]) for i in train_idx], device=device.device)

    def build():
        """The CNN and its optimiser, seeded: made once to train (and twice more by a bf16 probe, where one runs)."""
        torch.manual_seed(settings.seed)
        model = small_cnn(channels, len(labels)).to(device.device)
        optimiser = adamw(model.parameters(), lr=settings.learning_rate, weight_decay=1e-4)

        def predict() -> np.ndarray:
            model.eval()
            with torch.inference_mode():
                return torch.cat([model(x_test[s : s + 256]).argmax(-1).cpu() for s in range(0, len(x_test), 256)]).numpy()

        def loss_of(rows: list[int], training: bool):
            model.train(training)
            return torch.nn.functional.cross_entropy(model(x_train[rows]), y_train[rows])

        return [model], optimiser, loss_of, predict

    fit_rows, val_rows, patience = early_stopping(labels_of(data, train_idx), settings)
    test_labels = labels_of(data, test_idx)
    number = autocast_decision(SCRATCH_MODELS["image"], build, fit_rows, labels, test_labels, settings.batch_size,
                               on_progress=on_progress)
    modules, optimiser, loss_of, predict = build()
    trained = train(modules=modules, optimiser=optimiser, loss_of=loss_of, predict=predict, labels=labels,
                         test_labels=test_labels, fit_rows=fit_rows, val_rows=val_rows, patience=patience,
                         settings=settings, on_progress=on_progress, should_stop=should_stop, autocast=number.bf16)
    notes = [f"A small CNN trained from random weights on {size}×{size} {'grey' if channels == 1 else 'colour'} "
             f"pixels (images were {native} px at most). Held-out accuracy after every epoch is for the curve only.",
             f"Number format: {number.why}." if number.bf16 or number.speedup is not None else ""]
    return ArmResult(
        arm="scratch", approach=APPROACHES["scratch"], model=SCRATCH_MODELS["image"], source="none",
        device=training_device(number), labels=labels, trainable_params=trainable(modules[0]),
        train_examples=len(train_idx), test_examples=len(test_idx),
        params=asdict(settings) | {"image_size": size, "channels": channels, "number_format": number.format},
        notes=[n for n in notes if n] + trained.stop_note(settings), **trained.result_fields(),
    )


def run_from_scratch(data, train_idx, test_idx, settings: ScratchSettings, on_progress: OnProgress = ignore,
                     should_stop: ShouldStop = never) -> ArmResult:
    """Arm 4: no pretrained weights: TF-IDF + logistic regression (text), a small CNN (images).

    Args:
        data: LabelledData.
        train_idx: training items.
        test_idx: held-out items.
        settings: CNN epoch cap, time budget, early stopping, learning rate, image size.
        on_progress: told after every step and epoch (CNN) or once (TF-IDF).
        should_stop: when it returns True, the CNN stops before its next step.

    Returns:
        ArmResult.
    """
    if data.kind == "text":
        return scratch_text(data, train_idx, test_idx, settings, on_progress)
    return scratch_images(data, train_idx, test_idx, settings, on_progress, should_stop)
