"""Tables of labelled texts (CSV, TSV, semicolon- or bar-separated), read in memory with bounded work.

Everything a person uploads is untrusted: a table is decoded and parsed with bounded work, and every
failure a person can cause raises :class:`~core.errors.InputError` saying what is wrong, what the limit
is and what to do; every silent fix is noted.
"""
from __future__ import annotations

import csv
import io

import pandas as pd

from core.config import get_settings
from core.errors import InputError
from core.finetune.data.base import (SHOWN_NAMES, LabelledData, Limits, check_upload_size, keeping_notes,
                                     normalise_label, normalise_labels, plural, shown_name)
from core.finetune.data.validation import validate

DELIMITERS = ",;\t|"
SNIFF_CHARS = 4096  # csv.Sniffer's regexes are quadratic in the sample: keep it small
DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}

_SPREADSHEET_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # xlsx/ods (zip), xls (OLE)


def _decode(data: bytes, name: str) -> tuple[str, list[str]]:
    """Text of a table: UTF-16 with a BOM, UTF-8 (BOM or not), then cp1252, then latin-1."""
    if data.startswith(_SPREADSHEET_MAGIC):
        raise InputError(
            f"'{shown_name(name)}' looks like a spreadsheet or an archive, not a text table. "
            "Save it as CSV (comma-separated) or TSV (tab-separated) and upload that."
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), ["The file is not UTF-8; it was read as Windows-1252 (cp1252)."]
    except UnicodeDecodeError:
        return data.decode("latin-1"), ["The file is not UTF-8; it was read as Latin-1 (ISO-8859-1)."]


def _looks_binary(text: str) -> bool:
    sample = text[:SNIFF_CHARS * 4]
    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\r\n")
    return controls > 0.05 * max(len(sample), 1)


def _detect_delimiter(text: str) -> str:
    """The delimiter among , ; tab | (csv.Sniffer on the first lines, else the header's commonest)."""
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample.strip() else ""
        return max(DELIMITERS, key=header.count)


def _collect_rows(text: str, delimiter: str, strict: bool, max_rows: int, name: str,
                  rows: list[list[str]], lines: list[int]) -> None:
    """Append non-blank CSV rows (header first) and the line each ends on; at most ``max_rows`` data rows."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"', strict=strict)
    for row in reader:
        if any(cell.strip() for cell in row):
            rows.append(row)
            lines.append(reader.line_num)
        if len(rows) > max_rows + 1:
            raise InputError(
                f"'{shown_name(name)}' has more than {max_rows:,} rows, the limit here. "
                f"Upload a sample of at most {max_rows:,} rows."
            )


def _parse_rows(text: str, delimiter: str, max_rows: int, name: str) -> tuple[list[list[str]], list[int]]:
    """Rows of a CSV text (header first) and their line numbers.

    A strict pass comes first so that a quote left open (which would swallow the rest of the file
    into one text) is reported; other irregularities are then read leniently.
    """
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        _collect_rows(text, delimiter, True, max_rows, name, rows, lines)
    except csv.Error as err:
        if "unexpected end of data" in str(err):
            opened = (lines[-1] if lines else 0) + 1
            raise InputError(
                f"In '{shown_name(name)}' a quote opened on line {opened:,} is never closed, so the rest of the "
                "file would read as one text. Close that quote (or double it: \"\") and upload again."
            ) from err
        rows.clear()
        lines.clear()
        try:
            _collect_rows(text, delimiter, False, max_rows, name, rows, lines)
        except csv.Error as lenient_err:
            raise InputError(
                f"'{shown_name(name)}' could not be read as a table ({shown_name(str(lenient_err), 80)}). "
                "Upload a CSV or TSV file with a header row and one example per row."
            ) from lenient_err
    if not rows:
        raise InputError(f"'{shown_name(name)}' holds no table: the first line should name the columns.")
    return rows, lines


def _column_names(header: list[str]) -> list[str]:
    """Header cells made usable as column names: trimmed, never empty, never repeated."""
    names: list[str] = []
    for i, raw in enumerate(header):
        base = raw.replace("\ufeff", "").strip() or f"column {i + 1}"
        name, k = base, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    return names


def read_table(data: bytes, name: str, limits: Limits = Limits()) -> pd.DataFrame:
    """Parse an uploaded CSV/TSV: detect encoding and delimiter, every column as text.

    Args:
        data: the raw upload.
        name: the file name (for messages).
        limits: upload size and row bounds.

    Returns:
        A DataFrame of ``str`` columns (missing cells are ``""``), the first row as header.
        ``df.attrs["notes"]`` lists what was changed or skipped (encoding, rows mended).

    Raises:
        InputError: empty, too large, not text, fewer than two columns, no rows, too many rows,
            rows with more cells than the header that cannot be mended, or not parseable as a table
            (a :class:`DataError` with the notes made so far, once there are any).
    """
    check_upload_size(data, name, limits)
    text, notes = _decode(data, name)
    with keeping_notes(notes):
        if "\x00" in text:
            text = text.replace("\x00", "")
            notes.append("NUL characters were removed.")
        if _looks_binary(text):
            raise InputError(
                f"'{shown_name(name)}' does not look like a text table. Upload a CSV or TSV file "
                "with one example per row: a text column and a label column."
            )
        if not text.strip():
            raise InputError(f"'{shown_name(name)}' holds no text: upload a CSV with a text column and a label column.")
        delimiter = _detect_delimiter(text)
        rows, line_numbers = _parse_rows(text, delimiter, limits.max_rows, name)
        header = _column_names(rows[0])
        if len(header) < 2:
            raise InputError(
                f"'{shown_name(name)}' has only one column. A labelled table needs at least two: the text and its "
                "label, separated by commas, semicolons, tabs or |."
            )
        if len(rows) < 2:
            raise InputError(f"'{shown_name(name)}' has a header but no rows of data.")
        cells = _fit_rows(header, rows[1:], line_numbers[1:], delimiter, name, notes)
    df = pd.DataFrame(cells, columns=header, dtype=str)
    df.attrs["notes"] = notes
    return df


def _lines(numbers: list[int]) -> str:
    """'line 3' or 'lines 3, 5, 8, 13, 21 and 4 more'."""
    shown = ", ".join(f"{n:,}" for n in numbers[:SHOWN_NAMES])
    more = f" and {len(numbers) - SHOWN_NAMES:,} more" if len(numbers) > SHOWN_NAMES else ""
    return f"{'line' if len(numbers) == 1 else 'lines'} {shown}{more}"


def _fit_rows(header: list[str], body: list[list[str]], lines: list[int], delimiter: str, name: str,
              notes: list[str]) -> list[list[str]]:
    """Every row as wide as the header: short rows padded with "", long rows mended or refused.

    A row with more cells than the header usually holds a text with unquoted delimiters. When the
    label is the last column and the text the one before it, the extra cells are joined back into
    the text (noted); otherwise which cell belongs where cannot be told, and the rows are refused.

    Raises:
        InputError: rows with more cells than the header, unless the label is last and the text before it.
    """
    width = len(header)
    wide = [line for row, line in zip(body, lines) if len(row) > width]
    rows = [row + [""] * (width - len(row)) if len(row) <= width
            else row[: width - 2] + [delimiter.join(row[width - 2:-1]), row[-1]] for row in body]
    if not wide:
        return rows
    cells = DELIMITER_NAMES.get(delimiter, repr(delimiter))
    text_col, label_col = guess_columns(pd.DataFrame(rows, columns=header, dtype=str))
    if (text_col, label_col) != (header[-2], header[-1]):
        quoted = '"like, this"' if delimiter == "," else f"a text with {cells} in double quotes"
        raise InputError(
            f"In '{shown_name(name)}', {plural(len(wide), 'row')} ({_lines(wide)}) "
            f"{'has' if len(wide) == 1 else 'have'} more cells than the header's {width}: texts with unquoted "
            f"{cells}, most likely. The extra cells can be joined back into the text only when the label is "
            f"the last column and the text the one before it, which is not so here. Put such texts in double "
            f"quotes ({quoted}), or make the text and label the last two columns, and upload again."
        )
    notes.append(
        f"Joined the extra cells of {plural(len(wide), 'row')} ({_lines(wide)}) back into the column "
        f"'{shown_name(text_col, 30)}': {'its text holds' if len(wide) == 1 else 'their texts hold'} unquoted "
        f"{cells}, and the label ('{shown_name(label_col, 30)}') is the last column. "
        "Quote such texts to be sure they are read as meant."
    )
    return rows


_LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "y")
_TEXT_NAMES = ("text", "sentence", "review", "content", "comment", "message", "body")


def guess_columns(df: pd.DataFrame) -> tuple[str, str]:
    """Best guess of the text and label columns, for the page to preselect.

    A column named like a label (label, class, category, ...) or a text (text, review, ...) wins,
    even when it holds a single class (validation then says so); otherwise the label is the column
    with the fewest distinct values (at least 2) and the text the other column with the longest
    average value.

    Args:
        df: a table from :func:`read_table`.

    Returns:
        ``(text_column, label_column)``, two different columns.

    Raises:
        InputError: fewer than two columns.
    """
    columns = [str(c) for c in df.columns]
    if len(set(columns)) < 2:
        raise InputError("The table needs at least two columns: the text and its label.")
    values = [df.iloc[:, i].astype(str) for i in range(len(columns))]
    distinct = {c: len({normalise_label(v) for v in col} - {""}) for c, col in zip(columns, values)}
    mean_length = {c: float(col.str.len().mean()) if len(col) else 0.0 for c, col in zip(columns, values)}
    named = [c for c in columns if c.strip().lower() in _LABEL_NAMES and distinct[c] >= 1]
    candidates = named or [c for c in columns if distinct[c] >= 2] or columns
    label = min(candidates, key=distinct.__getitem__)  # the first of the fewest
    others = [c for c in columns if c != label]
    named_text = [c for c in others if c.strip().lower() in _TEXT_NAMES]
    text = named_text[0] if named_text else max(others, key=mean_length.__getitem__)
    return text, label


def table_to_data(df: pd.DataFrame, text_col: str, label_col: str, source: str, fingerprint: str,
                  limits: Limits = Limits()) -> LabelledData:
    """Turn two columns of a table into validated text data.

    Rows with an empty text or label are dropped, labels are trimmed and lower-cased, NULs are
    removed and long texts cut to ``Settings.max_text_chars``; each change is noted.

    Args:
        df: a table from :func:`read_table` (its ``attrs["notes"]`` are carried over).
        text_col: the column holding the texts.
        label_col: the column holding the labels.
        source: where the table came from, e.g. ``"upload: reviews.csv"``.
        fingerprint: SHA-256 of the raw upload.
        limits: validation bounds.

    Returns:
        LabelledData of kind ``"text"``.

    Raises:
        InputError: unknown or identical columns, or data that fails :func:`validate` (a
            :class:`DataError` that carries the table's notes and this function's).
    """
    notes = list(df.attrs.get("notes", []))
    with keeping_notes(notes):
        data = _table_columns_to_data(df, text_col, label_col, source, fingerprint, notes)
        validate(data, limits)
    return data


def _table_columns_to_data(df: pd.DataFrame, text_col: str, label_col: str, source: str, fingerprint: str,
                           notes: list[str]) -> LabelledData:
    """The two columns as text data, not yet validated; every change is appended to ``notes``."""
    for col in (text_col, label_col):
        if col not in df.columns:
            raise InputError(f"There is no column '{shown_name(str(col))}' in the table; pick one of its columns.")
    if text_col == label_col:
        raise InputError("The text and the label must be two different columns.")
    texts = [str(t).replace("\x00", "").strip() for t in df[text_col].tolist()]
    raw_labels = [str(t) for t in df[label_col].tolist()]
    keep = [i for i, (t, y) in enumerate(zip(texts, raw_labels)) if t and normalise_label(y)]
    if len(keep) < len(texts):
        notes.append(f"Dropped {plural(len(texts) - len(keep), 'row')} with an empty text or label.")
    texts = [texts[i] for i in keep]
    labels, label_notes = normalise_labels([raw_labels[i] for i in keep])
    notes += label_notes
    max_chars = get_settings().max_text_chars
    too_long = sum(len(t) > max_chars for t in texts)
    if too_long:
        texts = [t[:max_chars] for t in texts]
        notes.append(f"Cut {plural(too_long, 'text')} longer than {max_chars:,} characters to {max_chars:,}.")
    return LabelledData("text", texts, labels, notes, fingerprint, source)
