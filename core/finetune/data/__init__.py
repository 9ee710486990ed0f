"""Labelled data for fine-tuning: uploads (CSV/TSV tables, zips of class folders) and examples.

Everything a person uploads is untrusted. Tables are decoded and parsed in memory with bounded
work (:mod:`.tables`); zips are never extracted: members are checked on their declared sizes first,
then read in memory with a bounded read (:mod:`.zips`). Every failure a person can cause raises
:class:`~core.errors.InputError` with a message that says what is wrong, what the limit is and what
to do; every silent fix is noted. :mod:`.validation` checks there is enough to train and test on and
makes the one split every arm shares; :mod:`.examples` holds the bundled examples.
"""
from core.finetune.data.base import SHOWN_NAMES, DataError, LabelledData, Limits, normalise_label
from core.finetune.data.examples import DIGIT_SIDE, SENTIMENT_CSV, example_digits, example_sentiment
from core.finetune.data.tables import DELIMITER_NAMES, DELIMITERS, SNIFF_CHARS, guess_columns, read_table, table_to_data
from core.finetune.data.validation import preview_indices, split, subsample_per_class, validate
from core.finetune.data.zips import IMAGE_SUFFIXES, RATIO_FLOOR_BYTES, SYSTEM_FILES, read_image_zip

__all__ = [
    "DELIMITERS", "DELIMITER_NAMES", "DIGIT_SIDE", "IMAGE_SUFFIXES", "RATIO_FLOOR_BYTES", "SENTIMENT_CSV", "SHOWN_NAMES",
    "SNIFF_CHARS", "SYSTEM_FILES", "DataError", "LabelledData", "Limits", "example_digits", "example_sentiment",
    "guess_columns", "normalise_label", "preview_indices", "read_image_zip", "read_table", "split",
    "subsample_per_class", "table_to_data", "validate",
]
