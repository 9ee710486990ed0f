"""What every arm shares: the arm names, the settings of each arm, :class:`ArmResult`, and scoring."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from core.finetune import features as feats
from core.finetune import stats
from core.heads import LinearHead

ARMS = ("zero-shot", "prompt", "transfer", "fine-tune", "scratch", "api")
APPROACHES = {"zero-shot": "use as is", "prompt": "prompt with examples", "transfer": "transfer learning",
              "fine-tune": "fine-tune", "scratch": "from scratch", "api": "call an API"}
TITLES = {
    "zero-shot": "Use as is (zero-shot)",
    "prompt": "Prompt with examples (in-context learning)",
    "transfer": "Transfer learning (frozen features + head)",
    "fine-tune": "Fine-tune (top layers unfrozen)",
    "scratch": "From scratch (no pretrained weights)",
    "api": "Call an API (hosted LLM, zero-shot)",
}
SHORT_TITLES = {arm: TITLES[arm].split(" (")[0] for arm in ARMS}  # "Use as is", for checkboxes and tabs
NAMES = {arm: SHORT_TITLES[arm].lower() for arm in ARMS}  # "use as is", inside sentences
HEAVY = frozenset({"prompt", "fine-tune", "scratch"})  # they take the server's one training slot
ENCODER_ARMS = ("zero-shot", "transfer", "fine-tune")  # the arms built on a pretrained encoder
TASKS = {"text": "text-classification", "image": "image-classification"}
DEFAULT_TEMPLATE = {"text": "This text is about {label}.", "image": "a photo of a {label}."}
SCRATCH_MODELS = {"text": "tfidf-logreg", "image": "small-cnn"}
STOPPED_BY = {"stop": "Stop button", "budget": "time budget", "plateau": "early stopping", "epochs": "epoch cap"}


def short_title(arm: str) -> str:
    """'Use as is' for ``zero-shot``: the arm's title without its explanation in brackets."""
    return SHORT_TITLES[arm]


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
    items, set aside) has not improved for ``patience`` epochs (and at least ``loop.MIN_PATIENCE_STEPS`` steps);
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


# --- results ------------------------------------------------------------------------------------
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


# --- small helpers every arm uses ---------------------------------------------------------------
def score(y_true: Sequence[str], y_pred: Sequence[str], labels: list[str]) -> tuple[float, float, np.ndarray]:
    """Accuracy, macro-F1 and the confusion matrix (rows true, columns predicted, in ``labels`` order)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    return (
        float(accuracy_score(y_true, y_pred)),
        float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        confusion_matrix(y_true, y_pred, labels=labels),
    )


def labels_of(data, indices: Sequence[int]) -> list[str]:
    """The labels of ``data``'s items at ``indices``, in order."""
    return [data.labels[i] for i in indices]


def correct_of(data, test_idx: Sequence[int], predicted: Sequence[str]) -> list[bool]:
    """Per held-out item, whether ``predicted`` names its label."""
    return [str(p) == data.labels[i] for p, i in zip(predicted, test_idx)]


def encoder_for(settings, data) -> str:
    """The encoder an arm's settings name (the default for the data's kind when None), checked against the kind.

    Raises:
        InputError: when the encoder is of the other kind.
    """
    key = settings.encoder or feats.DEFAULT_ENCODER[data.kind]
    feats.check_encoder(key, data.kind)
    return key


def trainable(module) -> int:
    """Parameters of ``module`` that train."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
