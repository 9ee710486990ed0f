"""Arm 3, "fine-tune": the top k transformer layers of a private copy of the encoder unfrozen, with a linear
head, trained with AdamW by :func:`core.finetune.arms.loop.train` (texts; images when CLIP's image tower is
available)."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np

from core.device import choose_device
from core.errors import InputError, ModelUnavailable
from core.finetune import features as feats
from core.finetune.arms.loop import adamw, autocast_decision, early_stopping, train, training_device
from core.finetune.arms.base import APPROACHES, ArmResult, FineTuneSettings, encoder_for, labels_of, trainable
from core.progress import OnProgress, ShouldStop, ignore, never


@dataclass
class Tunable:
    """A private copy of a pretrained encoder, ready to be partly unfrozen.

    Attributes:
        encoder: the copy (float32, on the device); never the registry's shared model.
        blocks: its transformer blocks, bottom first.
        top_extra: modules or parameters above the last block that train with it (e.g. CLIP's projection).
        width: feature width.
        inputs: training-set positions -> a batch for ``features``.
        test_inputs: yields held-out batches, in order.
        features: batch -> L2-normalised features (with gradients when training).
        loaded: the registry entry it was copied from.
        what: one line for notes ("transformer layers" ...).
    """

    encoder: Any
    blocks: list
    top_extra: list
    width: int
    inputs: Callable[[list[int]], Any]
    test_inputs: Callable[[], Iterable]
    features: Callable[[Any], Any]
    loaded: Any
    what: str


def text_tunable(key: str, data, train_idx, test_idx, device: str) -> Tunable:
    """A copy of text encoder ``key`` (MiniLM, DistilBERT), mean pooled."""
    import torch

    from core import registry

    loaded = registry.load(key)
    backbone = feats.text_backbone(loaded)
    encoder = copy.deepcopy(backbone.model).to(device=device, dtype=torch.float32)
    train_texts = [data.items[i] for i in train_idx]
    test_texts = [data.items[i] for i in test_idx]
    return Tunable(
        encoder=encoder, blocks=feats.encoder_layers(encoder), top_extra=[], width=encoder.config.hidden_size,
        inputs=lambda rows: feats.tokenize(backbone, [train_texts[r] for r in rows], device),
        test_inputs=lambda: (feats.tokenize(backbone, test_texts[s : s + 64], device) for s in range(0, len(test_texts), 64)),
        features=lambda batch: feats.pooled(encoder, batch), loaded=loaded, what="transformer layers",
    )


def image_tunable(key: str, data, train_idx, test_idx, device: str) -> Tunable:
    """A copy of CLIP ``key``'s image tower.

    Raises:
        ModelUnavailable: when CLIP cannot be loaded here (said plainly).
        InputError: when its transformer blocks cannot be found.
    """
    import torch

    from core import registry

    try:
        loaded = registry.load(key)
    except ModelUnavailable as err:
        raise feats.clip_unavailable(err, key) from None
    clip = loaded.model
    visual = copy.deepcopy(clip.model.visual).to(device=device, dtype=torch.float32)
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None:
        raise InputError(f"Cannot find the transformer blocks of {type(visual).__name__} to fine-tune.")

    def pixels(indices: list[int]):
        return torch.stack([clip.preprocess(data.items[i]) for i in indices]).to(device=device, dtype=torch.float32)

    extra = [m for m in (getattr(visual, "ln_post", None), getattr(visual, "proj", None)) if m is not None]
    return Tunable(
        encoder=visual, blocks=list(blocks), top_extra=extra, width=int(clip.model.visual.output_dim),
        inputs=lambda rows: pixels([train_idx[r] for r in rows]),
        test_inputs=lambda: (pixels(test_idx[s : s + 32]) for s in range(0, len(test_idx), 32)),
        features=lambda batch: torch.nn.functional.normalize(visual(batch), dim=-1),
        loaded=loaded, what="vision transformer blocks (and the final norm and projection)",
    )


def run_fine_tune(data, train_idx, test_idx, settings: FineTuneSettings, on_progress: OnProgress = ignore,
                  should_stop: ShouldStop = never) -> ArmResult:
    """Arm 3: unfreeze the encoder's top layers and train them with a linear head (AdamW).

    Texts: the top layers of MiniLM (BERT) or DistilBERT, mean pooled. Images: the top blocks of
    CLIP's image tower; when CLIP cannot be loaded here the arm says so (ModelUnavailable).

    Args:
        data: LabelledData.
        train_idx: training items.
        test_idx: held-out items (scored after every epoch for the curve, and at the end).
        settings: encoder, layers, epochs, time budget, learning rates.
        on_progress: told after every step and every epoch.
        should_stop: when it returns True, training stops before the next step.

    Returns:
        ArmResult with the curve; ``stopped`` when the user or the budget ended it early.
    """
    import torch

    key = encoder_for(settings, data)
    labels = data.classes()
    device = choose_device()
    y_train = torch.tensor([labels.index(data.labels[i]) for i in train_idx], device=device.device)
    made: list[Tunable] = []

    def build():
        """A private copy of the encoder, partly unfrozen, a head and their optimiser, seeded: made once to train
        (and twice more by a bf16 probe, where one runs)."""
        torch.manual_seed(settings.seed)
        make = text_tunable if data.kind == "text" else image_tunable
        tunable = make(key, data, list(train_idx), list(test_idx), device.device)
        encoder, blocks = tunable.encoder, tunable.blocks
        top = max(0, min(settings.top_layers, len(blocks)))
        encoder.requires_grad_(False)
        for part in blocks[len(blocks) - top:] + (tunable.top_extra if top else []):
            part.requires_grad_(True)
        head = torch.nn.Linear(tunable.width, len(labels)).to(device.device)
        groups = [{"params": list(head.parameters()), "lr": settings.head_learning_rate}]
        unfrozen = [p for p in encoder.parameters() if p.requires_grad]
        if unfrozen:
            groups.append({"params": unfrozen, "lr": settings.learning_rate})
        optimiser = adamw(groups, weight_decay=0.01)

        def predict() -> np.ndarray:
            encoder.eval(), head.eval()
            with torch.inference_mode():
                return torch.cat([head(tunable.features(b)).argmax(-1).cpu() for b in tunable.test_inputs()]).numpy()

        def loss_of(rows: list[int], training: bool):
            encoder.train(training), head.train(training)
            return torch.nn.functional.cross_entropy(head(tunable.features(tunable.inputs(rows))), y_train[rows])

        made[:] = [tunable]
        return [encoder, head], optimiser, loss_of, predict

    fit_rows, val_rows, patience = early_stopping(labels_of(data, train_idx), settings)
    test_labels = labels_of(data, test_idx)
    number = autocast_decision(f"fine-tune:{key}", build, fit_rows, labels, test_labels, settings.batch_size,
                               on_progress=on_progress)
    (encoder, head), optimiser, loss_of, predict = build()
    tunable, blocks = made[0], made[0].blocks
    top = max(0, min(settings.top_layers, len(blocks)))
    trained = train(modules=[encoder, head], optimiser=optimiser, loss_of=loss_of, predict=predict, labels=labels,
                         test_labels=test_labels, fit_rows=fit_rows, val_rows=val_rows, patience=patience,
                         settings=settings, on_progress=on_progress, should_stop=should_stop, autocast=number.bf16)
    notes = [f"Unfroze the top {top} of {len(blocks)} {tunable.what} and trained them with a linear head; the rest "
             "of the encoder stays frozen. Held-out accuracy after every epoch is for the curve only; nothing is "
             "chosen with it."]
    if top < settings.top_layers:
        notes.append(f"The encoder has only {len(blocks)} blocks, so {top} were unfrozen instead of {settings.top_layers}.")
    if number.bf16 or number.speedup is not None:  # said where bf16 was tried; elsewhere nothing changes
        notes.append(f"Number format: {number.why}.")
    return ArmResult(
        arm="fine-tune", approach=APPROACHES["fine-tune"], model=key, source=tunable.loaded.resolution.source,
        device=training_device(number), labels=labels, trainable_params=trainable(encoder) + trainable(head),
        train_examples=len(train_idx), test_examples=len(test_idx), load_s=tunable.loaded.load_s,
        params=asdict(settings) | {"encoder": key, "number_format": number.format}, notes=notes + trained.stop_note(settings),
        **trained.result_fields(),
    )
