"""A linear classification head on frozen features, saved as safetensors + JSON (never pickle)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WEIGHTS_FILE = "head.safetensors"
CONFIG_FILE = "head.json"


@dataclass
class LinearHead:
    """``softmax(features @ weight.T + bias)`` over ``labels``.

    Attributes:
        weight: array of shape (classes, features).
        bias: array of shape (classes,).
        labels: class names, in the order of the rows of ``weight``.
        encoder: catalog key of the encoder whose features it reads.
        record: how it was trained and how well it did (free-form, JSON-serialisable).
    """

    weight: np.ndarray
    bias: np.ndarray
    labels: list[str]
    encoder: str
    record: dict = field(default_factory=dict)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, classes)."""
        logits = features @ self.weight.T + self.bias
        if len(self.labels) == 2 and self.weight.shape[0] == 1:  # binary logistic regression
            p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1 - p, p], axis=1)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    @classmethod
    def from_sklearn(cls, model, labels: list[str], encoder: str, record: dict) -> "LinearHead":
        """Wrap a fitted scikit-learn linear classifier (``coef_`` and ``intercept_``)."""
        return cls(np.asarray(model.coef_, np.float32), np.asarray(model.intercept_, np.float32), list(labels), encoder, record)

    def save(self, folder: Path) -> None:
        """Write head.safetensors and head.json into folder."""
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.weight.astype(np.float32), "bias": self.bias.astype(np.float32)}, str(folder / WEIGHTS_FILE))
        config = {"labels": self.labels, "encoder": self.encoder, "record": self.record}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "LinearHead":
        """Read a head written by :meth:`save`.

        Raises:
            ValueError: when the files disagree with each other.
        """
        from safetensors.numpy import load_file

        tensors = load_file(str(folder / WEIGHTS_FILE))
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        head = cls(tensors["weight"], tensors["bias"], list(config["labels"]), config["encoder"], config.get("record", {}))
        rows = head.weight.shape[0]
        if head.bias.shape != (rows,) or rows not in (len(head.labels), 1):
            raise ValueError(f"head in {folder} has {rows} rows for {len(head.labels)} labels")
        return head
