"""The example data sets the page offers: product-review sentiment (texts) and handwritten digits (images)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from core.catalog import ASSETS
from core.finetune.data.base import LabelledData
from core.finetune.data.tables import read_table, table_to_data
from core.runs import fingerprint as fingerprint_bytes

SENTIMENT_CSV = ASSETS / "sentiment.csv"
DIGIT_SIDE = 32


def example_sentiment() -> LabelledData:
    """The bundled product-review sentiment table (``assets/sentiment.csv``: text, label)."""
    raw = SENTIMENT_CSV.read_bytes()
    df = read_table(raw, SENTIMENT_CSV.name)
    return table_to_data(df, "text", "label", "example: sentiment", fingerprint_bytes(raw))


def example_digits(per_class: int | None = None) -> LabelledData:
    """scikit-learn's handwritten digits as RGB images (dark ink on white), labels "0".."9".

    The 8x8 images are scaled up to ``DIGIT_SIDE`` pixels square with nearest-neighbour.

    Args:
        per_class: keep the first this many of each digit (all 1,797 images when None).

    Returns:
        LabelledData of kind ``"image"``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.arange(len(digits.target))
    if per_class is not None:
        order = np.concatenate([np.flatnonzero(digits.target == d)[:per_class] for d in range(10)])
        order.sort()
    pixels = (255 - digits.images[order] * (255 / 16)).round().astype(np.uint8)
    items = [
        Image.fromarray(p, mode="L").resize((DIGIT_SIDE, DIGIT_SIDE), Image.NEAREST).convert("RGB") for p in pixels
    ]
    labels = [str(int(t)) for t in digits.target[order]]
    return LabelledData("image", items, labels, [], fingerprint_bytes(pixels.tobytes()), "example: digits")
