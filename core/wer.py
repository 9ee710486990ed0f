"""Word error rate: how far a text is from a reference, in words (speech transcripts, captions)."""
from __future__ import annotations

import re

import numpy as np


def words(text: str) -> list[str]:
    """Normalise text for scoring: lower case, punctuation dropped, hyphenated words joined."""
    return re.findall(r"[\w']+", re.sub(r"(?<=\w)-(?=\w)", "", text.lower()))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / words in the reference.

    Args:
        reference: the correct text.
        hypothesis: the text to score.

    Returns:
        0.0 for a perfect match; may exceed 1.0 when the hypothesis has many extra words.
        With an empty reference: 0.0 if the hypothesis is empty too, else 1.0.
    """
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return float(bool(hyp))
    # Levenshtein distance over words, one row at a time; an insertion chain within a row is a
    # running minimum of (cost - column) plus the column.
    columns = np.arange(len(hyp) + 1)
    row = columns.copy()
    hyp_array = np.array(hyp, dtype=object)
    for i, word in enumerate(ref, start=1):
        substitute = row[:-1] + (hyp_array != word)
        candidate = np.concatenate(([i], np.minimum(row[1:] + 1, substitute)))
        row = np.minimum.accumulate(candidate - columns) + columns
    return float(row[-1]) / len(ref)
