"""Train the offline sentiment head: MiniLM sentence embeddings + logistic regression.

Reads assets/sentiment.csv, holds out a stratified 25 % split, fits on the rest, records the
held-out accuracy, then refits on all rows and writes assets/sentiment_head/ (safetensors + JSON).

Usage: python scripts/train_sentiment_head.py
"""
from __future__ import annotations

import csv
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from core.catalog import ASSETS  # noqa: E402
from core.heads import LinearHead  # noqa: E402
from core import registry  # noqa: E402
from core.text import embed  # noqa: E402

ENCODER = "minilm-l6"
SEED = 0


def main() -> None:
    with open(ASSETS / "sentiment.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    labels = sorted({r["label"] for r in rows})
    y = [labels.index(r["label"]) for r in rows]
    start = time.perf_counter()
    loaded = registry.load(ENCODER)
    features = embed(loaded, texts)
    embed_s = time.perf_counter() - start
    x_train, x_test, y_train, y_test = train_test_split(features, y, test_size=0.25, stratify=y, random_state=SEED)
    held_out = LogisticRegression(C=10.0, max_iter=2000).fit(x_train, y_train)
    accuracy = float(held_out.score(x_test, y_test))
    start = time.perf_counter()
    final = LogisticRegression(C=10.0, max_iter=2000).fit(features, y)
    fit_s = time.perf_counter() - start
    record = {
        "data": "assets/sentiment.csv",
        "examples": len(rows),
        "held_out_examples": len(y_test),
        "held_out_accuracy": round(accuracy, 4),
        "split": "stratified 75/25, random_state=0; final head refit on all rows",
        "encoder_source": loaded.resolution.source,
        "embedding_seconds": round(embed_s, 2),
        "fit_seconds": round(fit_s, 3),
        "hardware": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    LinearHead.from_sklearn(final, labels, ENCODER, record).save(ASSETS / "sentiment_head")
    print(record)


if __name__ == "__main__":
    main()
