"""The arms of "should I train this, or just use it?", run on one held-out split.

1. ``zero-shot`` (use as is): texts by cosine similarity of sentence embeddings to a sentence
   made from each label; images by CLIP zero-shot with the class names.
2. ``transfer`` (transfer learning): frozen encoder features (cached) + a logistic-regression head.
3. ``fine-tune``: the top k transformer layers unfrozen, with a linear head, trained with AdamW
   for a few epochs within a time budget (text; images when CLIP's image tower is available).
4. ``scratch`` (from scratch): no pretrained weights; TF-IDF + logistic regression for texts, a
   small CNN on the raw pixels for images.
5. ``api`` (call an API): a hosted chat model asked for one of the class names; it lives in
   :mod:`core.finetune.api_arm`, beside the hosted client.

Every arm returns an :class:`ArmResult` with the same measured figures, and whether it got each
held-out item right (for :func:`verdict`'s paired test). Arms 3 and 4 share one training loop: it
reports :class:`Progress` through a callback, and ends at the Stop button, the time budget, the
epoch cap, or when the validation loss on training items set aside stops falling (early stopping).
The text TF-IDF arm fits in one go (logistic regression to convergence), so none of that applies.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from threading import Event
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from core.device import choose_device
from core.errors import InputError, ModelUnavailable
from core.finetune import features as feats
from core.finetune import stats
from core.heads import LinearHead
from core.measure import measured

ARMS = ("zero-shot", "transfer", "fine-tune", "scratch", "api")
APPROACHES = {"zero-shot": "use as is", "transfer": "transfer learning", "fine-tune": "fine-tune", "scratch": "from scratch",
              "api": "call an API"}
TITLES = {
    "zero-shot": "Use as is (zero-shot)",
    "transfer": "Transfer learning (frozen features + head)",
    "fine-tune": "Fine-tune (top layers unfrozen)",
    "scratch": "From scratch (no pretrained weights)",
    "api": "Call an API (hosted LLM, zero-shot)",
}
HEAVY = frozenset({"fine-tune", "scratch"})
TASKS = {"text": "text-classification", "image": "image-classification"}
DEFAULT_TEMPLATE = {"text": "This text is about {label}.", "image": "a photo of a {label}."}
SCRATCH_MODELS = {"text": "tfidf-logreg", "image": "small-cnn"}


# --- settings -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZeroShotSettings:
    """Arm 1. ``encoder`` None picks the default for the data's kind; ``template`` must hold ``{label}``."""

    encoder: str | None = None
    template: str | None = None


@dataclass(frozen=True)
class TransferSettings:
    """Arm 2. ``per_class`` None uses every training example; ``c`` is the inverse L2 strength."""

    encoder: str | None = None
    c: float = 1.0
    per_class: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class FineTuneSettings:
    """Arm 3: ``top_layers`` blocks unfrozen, at most ``epochs`` passes and ``time_budget_s`` seconds.

    ``patience``: stop after this many epochs without a lower validation loss (on ``validation_share`` of the
    training items, set aside); None trains on every training item until the epoch cap or the budget.
    """

    encoder: str | None = None
    top_layers: int = 2
    epochs: int = 3
    time_budget_s: float = 120.0
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 5e-3
    seed: int = 0
    patience: int | None = 2
    validation_share: float = 0.15


@dataclass(frozen=True)
class ScratchSettings:
    """Arm 4. The epochs, budget, early stopping and image size apply to the CNN (images); texts train in one go.

    The CNN trains until its time budget, or until the validation loss (on ``validation_share`` of the training
    items, set aside) has not improved for ``patience`` epochs (and at least :data:`MIN_PATIENCE_STEPS` steps);
    ``epochs`` is only a cap; ``patience`` None turns early stopping off. ``image_size`` None: the images' own
    size, capped at 32 pixels.
    """

    epochs: int = 200
    time_budget_s: float = 60.0
    batch_size: int = 32
    learning_rate: float = 3e-3
    image_size: int | None = None
    seed: int = 0
    patience: int | None = 10
    validation_share: float = 0.15


SETTINGS = {"zero-shot": ZeroShotSettings, "transfer": TransferSettings, "fine-tune": FineTuneSettings, "scratch": ScratchSettings}


# --- results and progress -----------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """One report from a training loop.

    Attributes:
        fraction: 0-1, the larger of steps done and time budget used.
        step: optimiser steps so far.
        epoch: epochs so far, fractional within an epoch.
        loss: training loss of the last step, if any.
        accuracy: held-out accuracy, at the end of each epoch.
        message: one line for people.
        val_loss: validation loss (on training items set aside), at the end of each epoch.
    """

    fraction: float
    step: int
    epoch: float
    loss: float | None = None
    accuracy: float | None = None
    message: str = ""
    val_loss: float | None = None


ProgressFn = Callable[[Progress], None]


@dataclass
class ArmResult:
    """What an arm achieved on the held-out split, and what it cost.

    Attributes:
        arm: one of :data:`ARMS`.
        approach: the run store's name for it (``use as is`` ...).
        model: the encoder's catalog key, or ``tfidf-logreg`` / ``small-cnn``.
        source: where pretrained weights came from (``none`` from scratch).
        device: device label.
        labels: class names, the order of ``confusion``'s rows (true) and columns (predicted).
        accuracy: held-out accuracy.
        macro_f1: held-out macro-F1.
        confusion: counts, shape (classes, classes).
        train_s: training time (features of the training items included; zero-shot: embedding the labels).
        latency_s: inference seconds per held-out example.
        peak_mb: peak process memory during the arm.
        trainable_params: parameters the arm trained.
        train_examples: labelled examples it learnt from.
        test_examples: held-out examples it was scored on.
        load_s: seconds spent loading a model, None when none was loaded.
        params: the settings it ran with.
        notes: what people should know (cache hits, early stops ...).
        curve: training curve points ``{step, epoch, loss, accuracy, val_loss}``.
        stopped: whether the Stop button or the time budget cut training short (early stopping is a normal end).
        head: the trained head (transfer arm), for export.
        correct: per held-out item, in the split's order, whether the arm got it right (for paired tests).
        stopped_by: what ended training: "stop", "budget", "plateau" (early stopping), "epochs" (the cap),
            "" when the arm has no training loop.
    """

    arm: str
    approach: str
    model: str
    source: str
    device: str
    labels: list[str]
    accuracy: float
    macro_f1: float
    confusion: np.ndarray
    train_s: float
    latency_s: float
    peak_mb: float
    trainable_params: int
    train_examples: int
    test_examples: int
    load_s: float | None = None
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    stopped: bool = False
    head: LinearHead | None = None
    correct: list[bool] = field(default_factory=list)
    stopped_by: str = ""

    @property
    def hits(self) -> int:
        """Held-out items classified correctly."""
        return int(np.trace(self.confusion))

    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval of the held-out accuracy."""
        return stats.wilson(self.hits, self.test_examples)

    def metrics(self) -> dict:
        """The figures the run store and the results table show."""
        low, high = self.interval()
        return {
            "accuracy": self.accuracy, "accuracy_low": low, "accuracy_high": high, "macro_f1": self.macro_f1,
            "latency_per_example_s": self.latency_s, "trainable_params": self.trainable_params,
            "stopped": int(self.stopped),
        }


def score(y_true: Sequence[str], y_pred: Sequence[str], labels: list[str]) -> tuple[float, float, np.ndarray]:
    """Accuracy, macro-F1 and the confusion matrix (rows true, columns predicted, in ``labels`` order)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    return (
        float(accuracy_score(y_true, y_pred)),
        float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        confusion_matrix(y_true, y_pred, labels=labels),
    )


def _labels_of(data, indices: Sequence[int]) -> list[str]:
    return [data.labels[i] for i in indices]


def _correct(data, test_idx: Sequence[int], predicted: Sequence[str]) -> list[bool]:
    return [str(p) == data.labels[i] for p, i in zip(predicted, test_idx)]


def _encoder(settings, data) -> str:
    key = settings.encoder or feats.DEFAULT_ENCODER[data.kind]
    feats.check_encoder(key, data.kind)
    return key


def _no_progress(_: Progress) -> None:
    return None


# --- arm 1: use as is ---------------------------------------------------------------------------
def label_prompts(template: str, labels: list[str]) -> list[str]:
    """One sentence per class from a template holding ``{label}``.

    Raises:
        InputError: when the template has no ``{label}``.
    """
    if "{label}" not in template:
        raise InputError("The zero-shot template must contain {label}, e.g. 'This text is about {label}.'")
    return [template.replace("{label}", label) for label in labels]


def _prompt_features(key: str, prompts: list[str]) -> np.ndarray:
    if feats.encoder_kind(key) == "text":
        return feats.encode_texts(key, prompts)[0]
    from core import vision

    try:
        return np.asarray(vision.text_features(prompts, key=key), np.float32)
    except ModelUnavailable as err:
        raise feats.clip_unavailable(err, key) from None


def zero_shot_predict(test: feats.Features, key: str, template: str, labels: list[str]) -> tuple[list[str], float]:
    """Pick, for each feature row, the label whose prompt is most similar (cosine).

    Returns:
        The predicted labels and the seconds spent embedding the prompts.
    """
    start = time.perf_counter()
    prompts = _prompt_features(key, label_prompts(template, labels))
    prompt_s = time.perf_counter() - start
    similarity = test.values @ prompts.T
    return [labels[i] for i in similarity.argmax(axis=1)], prompt_s


def run_zero_shot(data, train_idx, test_idx, settings: ZeroShotSettings, progress: ProgressFn = _no_progress,
                  stop: Event | None = None) -> ArmResult:
    """Arm 1: no training; compare each held-out item with the class names.

    Args:
        data: LabelledData.
        train_idx: unused (the arm learns nothing), kept for one signature across arms.
        test_idx: held-out items.
        settings: encoder and template.
        progress: not called (nothing to report).
        stop: not checked (one short pass).

    Returns:
        ArmResult; ``train_s`` is the time to embed the label sentences.
    """
    key = _encoder(settings, data)
    template = settings.template or DEFAULT_TEMPLATE[data.kind]
    labels = data.classes()
    with measured() as timing:
        test = feats.features_for(data, test_idx, key)
        start = time.perf_counter()
        predicted, prompt_s = zero_shot_predict(test, key, template, labels)
        compare_s = time.perf_counter() - start - prompt_s
    accuracy, macro_f1, confusion = score(_labels_of(data, test_idx), predicted, labels)
    notes = [f"No training: each held-out item is matched to the closest of {len(labels)} label sentences "
             f"(“{label_prompts(template, labels[:1])[0]}” ...)."]
    if test.cached:
        notes.append(f"Held-out features came from the cache (computed earlier in {test.seconds:.2f} s).")
    return ArmResult(
        arm="zero-shot", approach=APPROACHES["zero-shot"], model=key, source=test.source, device=choose_device().label(),
        labels=labels, accuracy=accuracy, macro_f1=macro_f1, confusion=confusion, train_s=prompt_s,
        latency_s=(test.seconds + compare_s) / len(test_idx), peak_mb=timing.peak_mb, trainable_params=0,
        train_examples=0, test_examples=len(test_idx), load_s=test.load_s,
        params={"encoder": key, "engine": feats.encoder_engine(key), "template": template}, notes=notes, correct=_correct(data, test_idx, predicted),
    )


# --- arm 2: transfer learning -------------------------------------------------------------------
def fit_head(values: np.ndarray, y: list[str], c: float, key: str, record: dict | None = None) -> LinearHead:
    """Fit a logistic-regression head on features and wrap it as a LinearHead."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000).fit(values, y)
    return LinearHead.from_sklearn(model, [str(label) for label in model.classes_], key, record or {})


def _subsample(data, train_idx: Sequence[int], per_class: int | None, seed: int) -> list[int]:
    if per_class is None:
        return list(train_idx)
    from core.finetune import data as data_module

    return list(data_module.subsample_per_class(list(train_idx), data.labels, per_class, seed=seed))


def run_transfer(data, train_idx, test_idx, settings: TransferSettings, progress: ProgressFn = _no_progress,
                 stop: Event | None = None) -> ArmResult:
    """Arm 2: frozen encoder features (cached) + a logistic-regression head.

    Args:
        data: LabelledData.
        train_idx: training items (all of them are embedded, so the features are shared).
        test_idx: held-out items.
        settings: encoder, regularisation, examples per class.
        progress: not called (one short fit).
        stop: not checked.

    Returns:
        ArmResult with ``head`` set; ``train_s`` = time to embed the training items + head fit.
    """
    key = _encoder(settings, data)
    labels = data.classes()
    used = _subsample(data, train_idx, settings.per_class, settings.seed)
    position = {index: row for row, index in enumerate(train_idx)}
    with measured() as timing:
        train = feats.features_for(data, train_idx, key)
        start = time.perf_counter()
        head = fit_head(train.values[[position[i] for i in used]], _labels_of(data, used), settings.c, key)
        head_s = time.perf_counter() - start
        test = feats.features_for(data, test_idx, key)
        start = time.perf_counter()
        probs = head.predict_proba(test.values)
        predict_s = time.perf_counter() - start
    predicted = [head.labels[i] for i in probs.argmax(axis=1)]
    accuracy, macro_f1, confusion = score(_labels_of(data, test_idx), predicted, labels)
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
        params={"encoder": key, "engine": feats.encoder_engine(key), "c": settings.c, "per_class": settings.per_class or 0},
        notes=notes, head=head,
        correct=_correct(data, test_idx, predicted),
    )


# --- the training loop shared by arms 3 and 4 ---------------------------------------------------
MIN_IMPROVEMENT = 1e-4  # a validation loss must fall by more than this to count as lower
MIN_PER_CLASS_TO_VALIDATE = 4  # fewer training items in a class: no validation slice, no early stopping
MIN_VALIDATION_ITEMS = 20  # a smaller slice gives a validation loss too noisy to stop on or to pick weights by
# Patience is at least this many optimiser steps: on a few dozen images an epoch is one or two steps, and the
# validation loss of a network learning from scratch wanders for a while before it falls.
MIN_PATIENCE_STEPS = 100
STOPPED_BY = {"stop": "Stop button", "budget": "time budget", "plateau": "early stopping", "epochs": "epoch cap"}


@dataclass
class _Validation:
    """Early stopping for :func:`_train_loop`.

    Attributes:
        loss: validation loss of the model as it is now (on training items set aside).
        patience: epochs without a lower validation loss before training stops.
        keep: remembers the current weights as the best so far.
        restore: goes back to the weights last kept.
    """

    loss: Callable[[], float]
    patience: int
    keep: Callable[[], None]
    restore: Callable[[], None]


@dataclass
class _Loop:
    """Outcome of :func:`_train_loop`.

    Attributes:
        curve: a point per step ``{step, epoch, loss, accuracy, val_loss}``.
        steps: optimiser steps done.
        stopped_by: ``stop``, ``budget``, ``plateau`` (early stopping) or ``epochs`` (the cap).
        epochs: epochs trained, fractional when cut short.
        best_epoch: where the validation loss was lowest (the weights kept), None without validation.
    """

    curve: list[dict]
    steps: int
    stopped_by: str
    epochs: float = 0.0
    best_epoch: float | None = None


def training_threads() -> int:
    """Torch threads for training (see DeviceChoice.training_threads)."""
    return choose_device().training_threads


def training_device() -> str:
    """Device label of arms 3 and 4: they train in float32 whatever dtype inference uses."""
    return f"{choose_device().device} · float32 · {training_threads()} thread(s)"


@contextmanager
def _capped_threads():
    import torch

    torch.set_num_threads(training_threads())
    try:
        yield
    finally:
        torch.set_num_threads(choose_device().threads)


def adamw(params, **options):
    """AdamW with its fused kernel (one pass over all parameters per step, CPU and CUDA): on the small CNN
    an epoch is about 9% shorter than with the default per-tensor loop; the update rule is the same."""
    import torch

    return torch.optim.AdamW(params, fused=True, **options)


def _train_loop(*, rows: list[int], batch_size: int, epochs: int, budget_s: float, seed: int,
                step: Callable[[list[int]], float], evaluate: Callable[[], float], progress: ProgressFn,
                stop: Event, validation: _Validation | None = None,
                clock: Callable[[], float] = time.perf_counter) -> _Loop:
    """Shuffled mini-batch epochs on capped threads: the one place that decides when training ends.

    Before every step it checks ``stop`` and the time budget. After every epoch (and when cut short) it
    scores the held-out split for the curve only; with ``validation`` it keeps the weights of the lowest
    validation loss, stops once that loss has not fallen for ``validation.patience`` epochs, and restores
    the kept weights at the end, so validation (never the held-out split) picks the model that is scored.

    Args:
        rows: positions in the training set to train on (any validation slice left out).
        step: trains on a batch of those positions; returns its loss.
        evaluate: held-out accuracy of the model as it is now.
        validation: early stopping; None trains until the epoch cap or the budget.
        clock: seconds, for the budget.

    Returns:
        The curve (a point per step; held-out accuracy at the start and after every epoch, validation loss
        after every epoch), the steps done and what stopped training.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(len(rows) / batch_size)
    total = max(epochs * per_epoch, 1)
    best, best_epoch, stale, done, stopped_by = math.inf, None, 0, 0, ""
    with _capped_threads():
        start = clock()

        def fraction() -> float:
            return min(max(done / total, (clock() - start) / max(budget_s, 1e-9)), 1.0)

        accuracy = evaluate()
        curve = [{"step": 0, "epoch": 0.0, "loss": None, "accuracy": accuracy, "val_loss": None}]
        progress(Progress(0.0, 0, 0.0, None, accuracy, "Held-out accuracy before training"))
        for epoch in range(epochs):
            order = torch.randperm(len(rows), generator=generator).tolist()
            for b in range(per_epoch):
                if stop.is_set():
                    stopped_by = "stop"
                elif clock() - start > budget_s:
                    stopped_by = "budget"
                if stopped_by:
                    break
                loss = step([rows[i] for i in order[b * batch_size : (b + 1) * batch_size]])
                done += 1
                where = epoch + (b + 1) / per_epoch
                curve.append({"step": done, "epoch": round(where, 3), "loss": loss, "accuracy": None, "val_loss": None})
                message = f"Epoch {epoch + 1} (at most {epochs}), step {done}"
                progress(Progress(fraction(), done, where, loss, None, message))
            point = curve[-1]
            if point["accuracy"] is not None:  # stopped before this epoch's first step
                break
            point["accuracy"] = accuracy = evaluate()
            message = f"Epoch {epoch + 1} ended: held-out accuracy {accuracy:.1%}"
            if validation is not None:
                point["val_loss"] = validation.loss()
                stale += 1
                if point["val_loss"] < best - MIN_IMPROVEMENT:
                    best, best_epoch, stale = point["val_loss"], point["epoch"], 0
                    validation.keep()
                message += f", validation loss {point['val_loss']:.4f} (lowest {best:.4f}, epoch {best_epoch:g})"
                if not stopped_by and stale >= validation.patience:
                    stopped_by = "plateau"
            progress(Progress(fraction(), done, point["epoch"], point["loss"], accuracy, message, point["val_loss"]))
            if stopped_by:
                break
        if best_epoch is not None and best_epoch != curve[-1]["epoch"]:
            validation.restore()
    return _Loop(curve, done, stopped_by or "epochs", curve[-1]["epoch"], best_epoch)


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


class _Checkpoint:
    """The trainable parameters and the buffers (e.g. batch-norm statistics) of some modules, kept in memory."""

    def __init__(self, modules: list) -> None:
        self.modules, self.saved = modules, []

    def _tensors(self):
        for i, module in enumerate(self.modules):
            yield from ((f"{i}.{n}", p) for n, p in module.named_parameters() if p.requires_grad)
            yield from ((f"{i}.{n}", b) for n, b in module.named_buffers())

    def keep(self) -> None:
        self.saved = {name: tensor.detach().clone() for name, tensor in self._tensors()}

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for name, tensor in self._tensors():
                tensor.copy_(self.saved[name])


@dataclass
class _Trained:
    """What :func:`_train_and_score` measured: the loop, the times and the held-out scores."""

    loop: _Loop
    train_s: float
    latency_s: float
    peak_mb: float
    accuracy: float
    macro_f1: float
    confusion: np.ndarray
    correct: list[bool]
    validation_items: int
    patience: int | None


def _train_and_score(data, train_idx, test_idx, labels: list[str], settings, loss_of, optimiser, modules: list,
                     predict: Callable[[], np.ndarray], progress: ProgressFn, stop: Event) -> _Trained:
    """Arms 3 and 4: train ``modules`` with ``optimiser`` on ``loss_of(rows, True)``, then score ``predict()``.

    With ``settings.patience`` a stratified ``settings.validation_share`` of the training items is set aside and
    ``loss_of(rows, False)`` on it decides when to stop and which weights to keep. Patience counts epochs, and at
    least :data:`MIN_PATIENCE_STEPS` steps; when the epoch cap comes first, nothing is set aside.
    """
    import torch

    fit_rows, val_rows, patience = list(range(len(train_idx))), [], None
    if settings.patience is not None:
        fit, val = validation_slice(_labels_of(data, train_idx), settings.validation_share, settings.seed)
        patience = max(settings.patience, math.ceil(MIN_PATIENCE_STEPS / math.ceil(len(fit) / settings.batch_size)))
        if val and settings.epochs > patience:
            fit_rows, val_rows = fit, val

    def evaluate() -> float:
        return float(np.mean([labels[i] == data.labels[j] for i, j in zip(predict(), test_idx)]))

    def step(rows: list[int]) -> float:
        loss = loss_of(rows, True)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return float(loss.detach())

    def validation_loss() -> float:
        with torch.inference_mode():
            chunks = [val_rows[s : s + 256] for s in range(0, len(val_rows), 256)]
            return sum(float(loss_of(rows, False)) * len(rows) for rows in chunks) / len(val_rows)

    checkpoint = _Checkpoint(modules)
    validation = _Validation(validation_loss, patience, checkpoint.keep, checkpoint.restore) if val_rows else None
    with measured() as timing:
        start = time.perf_counter()
        loop = _train_loop(rows=fit_rows, batch_size=settings.batch_size, epochs=settings.epochs,
                           budget_s=settings.time_budget_s, seed=settings.seed, step=step, evaluate=evaluate,
                           progress=progress, stop=stop, validation=validation)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        predicted = [labels[i] for i in predict()]
        latency_s = (time.perf_counter() - start) / len(test_idx)
    accuracy, macro_f1, confusion = score(_labels_of(data, test_idx), predicted, labels)
    return _Trained(loop, train_s, latency_s, timing.peak_mb, accuracy, macro_f1, confusion,
                    _correct(data, test_idx, predicted), len(val_rows), patience)


def _trained_fields(trained: _Trained) -> dict:
    """The ArmResult fields that :func:`_train_and_score` measured."""
    return {
        "accuracy": trained.accuracy, "macro_f1": trained.macro_f1, "confusion": trained.confusion,
        "train_s": trained.train_s, "latency_s": trained.latency_s, "peak_mb": trained.peak_mb,
        "curve": trained.loop.curve, "correct": trained.correct, "stopped_by": trained.loop.stopped_by,
        "stopped": trained.loop.stopped_by in ("stop", "budget"),
    }


def _stop_note(trained: _Trained, settings) -> list[str]:
    """What ended training, and which weights were scored."""
    loop = trained.loop
    done = f"{loop.steps} steps ({loop.epochs:g} epochs)"
    ended = {
        "stop": f"Stopped by the user after {done}.",
        "budget": f"Reached the {settings.time_budget_s:g} s time budget after {done}.",
        "plateau": f"Early stopping: the validation loss had not fallen for {trained.patience} epochs, so training "
                   f"ended after {done}, within the {settings.time_budget_s:g} s budget.",
        "epochs": f"Trained the full {settings.epochs} epochs (the cap), {loop.steps} steps.",
    }[loop.stopped_by]
    if not trained.validation_items:
        why = ("early stopping is off" if trained.patience is None else
               f"the {settings.epochs}-epoch cap comes before a patience of {trained.patience} epochs"
               if settings.epochs <= trained.patience else
               f"too few training examples to set {MIN_VALIDATION_ITEMS} aside with every class in them")
        return [f"{ended} No validation slice ({why}): it trained on every training example until the epoch cap, "
                "the budget or Stop; the scores are for the model at that point."]
    return [f"{ended} Validation: {trained.validation_items} training examples set aside (never the held-out ones); "
            f"the scores are for the weights of epoch {loop.best_epoch:g}, where the validation loss was lowest."]


def _trainable(module) -> int:
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


# --- arm 3: fine-tune ---------------------------------------------------------------------------
@dataclass
class _Tunable:
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


def _text_tunable(key: str, data, train_idx, test_idx, device: str) -> _Tunable:
    import torch

    from core import registry

    loaded = registry.load(key)
    backbone = feats.text_backbone(loaded)
    encoder = copy.deepcopy(backbone.model).to(device=device, dtype=torch.float32)
    train_texts = [data.items[i] for i in train_idx]
    test_texts = [data.items[i] for i in test_idx]
    return _Tunable(
        encoder=encoder, blocks=feats.encoder_layers(encoder), top_extra=[], width=encoder.config.hidden_size,
        inputs=lambda rows: feats.tokenize(backbone, [train_texts[r] for r in rows], device),
        test_inputs=lambda: (feats.tokenize(backbone, test_texts[s : s + 64], device) for s in range(0, len(test_texts), 64)),
        features=lambda batch: feats.pooled(encoder, batch), loaded=loaded, what="transformer layers",
    )


def _image_tunable(key: str, data, train_idx, test_idx, device: str) -> _Tunable:
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
    return _Tunable(
        encoder=visual, blocks=list(blocks), top_extra=extra, width=int(clip.model.visual.output_dim),
        inputs=lambda rows: pixels([train_idx[r] for r in rows]),
        test_inputs=lambda: (pixels(test_idx[s : s + 32]) for s in range(0, len(test_idx), 32)),
        features=lambda batch: torch.nn.functional.normalize(visual(batch), dim=-1),
        loaded=loaded, what="vision transformer blocks (and the final norm and projection)",
    )


def run_fine_tune(data, train_idx, test_idx, settings: FineTuneSettings, progress: ProgressFn = _no_progress,
                  stop: Event | None = None) -> ArmResult:
    """Arm 3: unfreeze the encoder's top layers and train them with a linear head (AdamW).

    Texts: the top layers of MiniLM (BERT) or DistilBERT, mean pooled. Images: the top blocks of
    CLIP's image tower; when CLIP cannot be loaded here the arm says so (ModelUnavailable).

    Args:
        data: LabelledData.
        train_idx: training items.
        test_idx: held-out items (scored after every epoch for the curve, and at the end).
        settings: encoder, layers, epochs, time budget, learning rates.
        progress: called after every step and every epoch.
        stop: set it to stop before the next step.

    Returns:
        ArmResult with the curve; ``stopped`` when the user or the budget ended it early.
    """
    import torch

    stop = stop or Event()
    key = _encoder(settings, data)
    labels = data.classes()
    device = choose_device()
    torch.manual_seed(settings.seed)
    build = _text_tunable if data.kind == "text" else _image_tunable
    tunable = build(key, data, list(train_idx), list(test_idx), device.device)
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
    y_train = torch.tensor([labels.index(data.labels[i]) for i in train_idx], device=device.device)

    def predict() -> np.ndarray:
        encoder.eval(), head.eval()
        with torch.inference_mode():
            return torch.cat([head(tunable.features(b)).argmax(-1).cpu() for b in tunable.test_inputs()]).numpy()

    def loss_of(rows: list[int], training: bool):
        encoder.train(training), head.train(training)
        return torch.nn.functional.cross_entropy(head(tunable.features(tunable.inputs(rows))), y_train[rows])

    trained = _train_and_score(data, train_idx, test_idx, labels, settings, loss_of, optimiser, [encoder, head],
                               predict, progress, stop)
    notes = [f"Unfroze the top {top} of {len(blocks)} {tunable.what} and trained them with a linear head; the rest "
             "of the encoder stays frozen. Held-out accuracy after every epoch is for the curve only; nothing is "
             "chosen with it."]
    if top < settings.top_layers:
        notes.append(f"The encoder has only {len(blocks)} blocks, so {top} were unfrozen instead of {settings.top_layers}.")
    return ArmResult(
        arm="fine-tune", approach=APPROACHES["fine-tune"], model=key, source=tunable.loaded.resolution.source,
        device=training_device(), labels=labels, trainable_params=_trainable(encoder) + _trainable(head),
        train_examples=len(train_idx), test_examples=len(test_idx), load_s=tunable.loaded.load_s,
        params=asdict(settings) | {"encoder": key}, notes=notes + _stop_note(trained, settings),
        **_trained_fields(trained),
    )


# --- arm 4: from scratch ------------------------------------------------------------------------
def _scratch_text(data, train_idx, test_idx, settings: ScratchSettings, progress: ProgressFn) -> ArmResult:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from core import runs
    from sklearn.linear_model import LogisticRegression

    labels = data.classes()
    with measured() as timing:
        start = time.perf_counter()
        vectoriser = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
        classifier = LogisticRegression(max_iter=2000)
        classifier.fit(vectoriser.fit_transform([data.items[i] for i in train_idx]), _labels_of(data, train_idx))
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        predicted = list(classifier.predict(vectoriser.transform([data.items[i] for i in test_idx])))
        latency_s = (time.perf_counter() - start) / len(test_idx)
    accuracy, macro_f1, confusion = score(_labels_of(data, test_idx), predicted, labels)
    progress(Progress(1.0, 1, 1.0, None, accuracy, "TF-IDF + logistic regression fitted"))
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
        correct=_correct(data, test_idx, predicted),
    )


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


def _scratch_images(data, train_idx, test_idx, settings: ScratchSettings, progress: ProgressFn, stop: Event) -> ArmResult:
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

    trained = _train_and_score(data, train_idx, test_idx, labels, settings, loss_of, optimiser, [model], predict,
                               progress, stop)
    notes = [f"A small CNN trained from random weights on {size}×{size} {'grey' if channels == 1 else 'colour'} "
             f"pixels (images were {native} px at most). Held-out accuracy after every epoch is for the curve only."]
    return ArmResult(
        arm="scratch", approach=APPROACHES["scratch"], model=SCRATCH_MODELS["image"], source="none",
        device=training_device(), labels=labels, trainable_params=_trainable(model), train_examples=len(train_idx),
        test_examples=len(test_idx), params=asdict(settings) | {"image_size": size, "channels": channels},
        notes=notes + _stop_note(trained, settings), **_trained_fields(trained),
    )


def run_from_scratch(data, train_idx, test_idx, settings: ScratchSettings, progress: ProgressFn = _no_progress,
                     stop: Event | None = None) -> ArmResult:
    """Arm 4: no pretrained weights: TF-IDF + logistic regression (text), a small CNN (images).

    Args:
        data: LabelledData.
        train_idx: training items.
        test_idx: held-out items.
        settings: CNN epoch cap, time budget, early stopping, learning rate, image size.
        progress: called after every step and epoch (CNN) or once (TF-IDF).
        stop: set it to stop the CNN before its next step.

    Returns:
        ArmResult.
    """
    if data.kind == "text":
        return _scratch_text(data, train_idx, test_idx, settings, progress)
    return _scratch_images(data, train_idx, test_idx, settings, progress, stop or Event())


def _run_api(*args) -> ArmResult:
    from core.finetune.api_arm import run_api  # the fifth arm lives beside, with the hosted client

    return run_api(*args)


RUNNERS = {"zero-shot": run_zero_shot, "transfer": run_transfer, "fine-tune": run_fine_tune, "scratch": run_from_scratch,
           "api": _run_api}


def run_arm(arm: str, data, train_idx, test_idx, settings, progress: ProgressFn = _no_progress,
            stop: Event | None = None) -> ArmResult:
    """Run one arm by name (see :data:`ARMS`) with its settings dataclass."""
    return RUNNERS[arm](data, list(train_idx), list(test_idx), settings, progress, stop)


# --- label efficiency, verdict, run store -------------------------------------------------------
NAMES = {arm: TITLES[arm].split(" (")[0].lower() for arm in ARMS}
DRAWS = 5  # random draws of the examples per point of the label-efficiency curve


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
    key = _encoder(transfer, data)
    labels = data.classes()
    train = feats.features_for(data, train_idx, key)
    test = feats.features_for(data, test_idx, key)
    y_test = _labels_of(data, test_idx)
    position = {index: row for row, index in enumerate(train_idx)}
    zero_key = _encoder(zero_shot, data)
    zero_test = test if zero_key == key else feats.features_for(data, test_idx, zero_key)
    zero_pred, _ = zero_shot_predict(zero_test, zero_key, zero_shot.template or DEFAULT_TEMPLATE[data.kind], labels)
    zero_accuracy = score(y_test, zero_pred, labels)[0]
    rows = []
    for per_class in examples_per_class_steps(_labels_of(data, train_idx)):
        for seed in range(draws):
            used = _subsample(data, train_idx, per_class, seed)
            head = fit_head(train.values[[position[i] for i in used]], _labels_of(data, used), transfer.c, key)
            predicted = [head.labels[i] for i in head.predict_proba(test.values).argmax(axis=1)]
            rows.append({"examples_per_class": per_class, "train_examples": len(used), "approach": APPROACHES["transfer"],
                         "seed": seed, "accuracy": score(y_test, predicted, labels)[0]})
        rows.append({"examples_per_class": per_class, "train_examples": len(used), "approach": APPROACHES["zero-shot"],
                     "seed": 0, "accuracy": zero_accuracy})
    return rows


def compare_arms(first: ArmResult, second: ArmResult) -> stats.Difference:
    """Whether two arms' held-out accuracies differ beyond chance: McNemar's exact test on their per-item
    outcomes (they were scored on the same items), or the overlap of their Wilson intervals without them."""
    return stats.compare(first.correct or None, second.correct or None,
                         (first.hits, first.test_examples), (second.hits, second.test_examples))


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def _evidence(best: ArmResult, compared: list[tuple[ArmResult, stats.Difference]]) -> str:
    """'(McNemar's exact test ...: p = 0.625 against fine-tune, ...)' or the Wilson intervals compared."""
    if all(d.p_value is not None for _, d in compared):
        return f"({stats.MCNEMAR}: " + ", ".join(f"{_p(d.p_value)} against {NAMES[r.arm]}" for r, d in compared) + ")"
    shown = [best] + [r for r, _ in compared]
    return f"({stats.OVERLAP}: " + ", ".join(f"{NAMES[r.arm]} {stats.interval_text(r.hits, r.test_examples)}"
                                             for r in shown) + ")"


def _separation(best: ArmResult, others: list[ArmResult]) -> tuple[str, list[ArmResult]]:
    """The sentence saying which arms this split tells apart from the best, and the ones it cannot."""
    compared = [(r, compare_arms(best, r)) for r in others]
    tied = [r for r, d in compared if not d.distinguishable]
    apart = [r for r, d in compared if d.distinguishable]
    on = f"On these {best.test_examples} held-out examples"
    if not apart:
        sentence = (f"{on} the arms are not distinguishable {_evidence(best, compared)}: the ranking may be chance; "
                    "more held-out examples would tell them apart.")
    elif not tied:
        sentence = f"{on}, {NAMES[best.arm]} is ahead of every other arm beyond chance {_evidence(best, compared)}."
    else:
        sentence = (f"{on}, {NAMES[best.arm]} is ahead of {' and '.join(NAMES[r.arm] for r in apart)} beyond chance, "
                    f"but not distinguishable from {' and '.join(NAMES[r.arm] for r in tied)} "
                    f"{_evidence(best, compared)}.")
    return sentence, tied


def verdict(results: dict[str, ArmResult]) -> str:
    """One paragraph comparing the arms that ran, computed from their measured figures.

    Arms are told apart only when the held-out split can: McNemar's exact test on the same held-out items
    (Wilson intervals when per-item outcomes are missing). An arm within 2 points of the best, or not
    distinguishable from it, counts as close, and the cheapest close arm is recommended.
    """
    parts = []
    zero, transfer, tune, scratch, api = (results.get(arm) for arm in ARMS)
    if api:
        parts.append(f"Calling {api.model} scored {api.accuracy:.0%} with no training, for "
                     f"${api.params.get('cost_usd', 0):.4f} on the held-out set "
                     f"(${api.params.get('cost_per_1000_usd', 0):.3f} per 1,000 items).")
    if zero:
        parts.append(f"Used as is, {zero.model} scored {zero.accuracy:.0%} with no training.")
    if transfer:
        parts.append(f"Transfer learning reached {transfer.accuracy:.0%} in {transfer.train_s:.1f} s "
                     f"({transfer.train_examples} labelled examples).")
    if tune and transfer:
        gain = (tune.accuracy - transfer.accuracy) * 100
        ratio = tune.train_s / max(transfer.train_s, 1e-9)
        times = f"{ratio:.1f}×" if ratio < 10 else f"{ratio:,.0f}×"
        parts.append(f"Fine-tuning {'gained' if gain >= 0 else 'lost'} {abs(gain):.1f} points for {times} the time "
                     f"({tune.train_s:.1f} s).")
    elif tune:
        parts.append(f"Fine-tuning reached {tune.accuracy:.0%} in {tune.train_s:.1f} s.")
    if scratch:
        parts.append(f"From scratch reached {scratch.accuracy:.0%} in {scratch.train_s:.1f} s.")
    if len(results) >= 2:
        best, *others = sorted(results.values(), key=lambda r: (-r.accuracy, r.train_s))
        sentence, tied = _separation(best, others)
        parts.append(sentence)
        close = [best] + [r for r in others if r in tied or r.accuracy >= best.accuracy - 0.02]

        def near(r: ArmResult) -> str:
            return "comes within 2 points of" if r.accuracy >= best.accuracy - 0.02 else "cannot be told apart from"

        if zero is best:
            parts.append(f"Using the model as is scores the best ({best.accuracy:.0%}) with no labels and no training: "
                         "start there.")
        elif zero in close:
            parts.append(f"Using the model as is {near(zero)} the best ({best.accuracy:.0%}) with no labels and no "
                         "training: try it first.")
        else:
            cheapest = min(close, key=lambda r: r.train_s)
            if cheapest is not best:
                parts.append(f"Best accuracy: {NAMES[best.arm]} ({best.accuracy:.0%}); {NAMES[cheapest.arm]} "
                             f"{near(cheapest)} it ({cheapest.accuracy:.0%}) for {cheapest.train_s:.1f} s of training "
                             f"instead of {best.train_s:.1f} s.")
            elif len(close) > 1:
                parts.append(f"Highest here: {NAMES[best.arm]} ({best.accuracy:.0%}), also the cheapest to train of "
                             f"the arms close to it ({best.train_s:.1f} s).")
            else:
                parts.append(f"Best: {NAMES[best.arm]} ({best.accuracy:.0%}).")
    return " ".join(parts)


def stopped_by_text(result: ArmResult) -> str:
    """'early stopping · 23 epochs' for the results table; '—' for arms without a training loop."""
    if not result.stopped_by:
        return "—"
    return f"{STOPPED_BY[result.stopped_by]} · {result.curve[-1]['epoch']:g} epochs"


def results_table(results: dict[str, ArmResult]) -> list[dict]:
    """One row per arm for the page's table, with the 95% Wilson interval of each held-out accuracy."""
    return [{
        "arm": TITLES[r.arm], "model": r.model, "accuracy": r.accuracy,
        "95% interval": stats.interval_text(r.hits, r.test_examples), "macro-F1": r.macro_f1,
        "training (s)": r.train_s, "stopped by": stopped_by_text(r), "latency / example (ms)": r.latency_s * 1000,
        "peak memory (MB)": r.peak_mb, "trainable params": r.trainable_params, "examples used": r.train_examples,
        "held out": r.test_examples, "$ per 1,000 items": _per_thousand_usd(r),
    } for r in (results[arm] for arm in ARMS if arm in results)]


def _per_thousand_usd(result: ArmResult) -> float:
    """What 1,000 more items would cost: an API's charge, else the inference time priced by the host."""
    from core.costs import cost_usd

    if "cost_per_1000_usd" in result.params:
        return float(result.params["cost_per_1000_usd"])
    return cost_usd(result.latency_s * 1000, result.device)


def record(result: ArmResult, data, session_id: str | None = None) -> None:
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
        engine=runs.HOSTED_ENGINE if result.approach == "call an API" else result.params.get("engine", runs.DEFAULT_ENGINE),
    )
