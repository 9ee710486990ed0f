"""Labelled data for fine-tuning: uploads (CSV/TSV tables, zips of class folders) and examples.

Everything a person uploads is untrusted. Tables are decoded and parsed in memory with bounded
work; zips are never extracted: members are checked on their declared sizes first, then read in
memory with a bounded read. Every failure a person can cause raises :class:`InputError` with a
message that says what is wrong, what the limit is and what to do; every silent fix is noted.
"""
from __future__ import annotations

import csv
import io
import lzma
import stat
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from core.catalog import ASSETS
from core.config import get_settings
from core.errors import InputError
from core.images import open_image
from core.runs import fingerprint as fingerprint_bytes

DELIMITERS = ",;\t|"
SNIFF_CHARS = 4096  # csv.Sniffer's regexes are quadratic in the sample: keep it small
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx"}
RATIO_FLOOR_BYTES = 2**20  # members that unpack to less than this cannot hurt, whatever their ratio
SHOWN_NAMES = 5

DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}

# What zipfile raises on damaged or unsupported archives and members.
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
               zlib.error, lzma.LZMAError)


class DataError(InputError):
    """An InputError raised after notes were made (rows dropped, zip entries refused): they go with it.

    Attributes:
        notes: what was changed or skipped before the error, written for people.
    """

    def __init__(self, message: str, notes: list[str] | None = None) -> None:
        super().__init__(message)
        self.notes = list(notes or [])


@contextmanager
def _keeping(notes: list[str]):
    """Raise any InputError from the block as a DataError that also carries ``notes`` (read when it is raised)."""
    try:
        yield
    except InputError as err:
        earlier = [n for n in getattr(err, "notes", []) if n not in notes]
        raise DataError(str(err), [*notes, *earlier]) from err


@dataclass
class LabelledData:
    """Items with one label each, ready to split and train on.

    Attributes:
        kind: ``"text"`` or ``"image"``.
        items: ``list[str]`` for text; ``list[PIL.Image.Image]`` (RGB) for images.
        labels: one normalised label per item.
        notes: what was changed or skipped on the way, written for people.
        fingerprint: SHA-256 of the raw upload bytes (identifies the data without storing it).
        source: where it came from, e.g. ``"upload: reviews.csv"`` or ``"example: digits"``.
    """

    kind: str
    items: list
    labels: list[str]
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    source: str = ""

    def classes(self) -> list[str]:
        """The distinct labels, sorted."""
        return sorted(set(self.labels))

    def class_counts(self) -> dict[str, int]:
        """Examples per class, in :meth:`classes` order."""
        counts = dict.fromkeys(self.classes(), 0)
        for label in self.labels:
            counts[label] += 1
        return counts


@dataclass(frozen=True)
class Limits:
    """Bounds on uploads, sized for Streamlit Community Cloud (CPU, under 2.7 GB of memory)."""

    max_bytes: int = 50 * 2**20
    max_rows: int = 20_000
    max_files: int = 5_000
    max_unpacked_bytes: int = 300 * 2**20
    max_ratio: int = 100
    min_classes: int = 2
    min_per_class: int = 4
    max_image_side: int = 512


# --- shared helpers --------------------------------------------------------------------------------
def _size(n: int) -> str:
    """Bytes for people: '512 B', '3.2 KB', '50 MB'."""
    value, unit = float(n), "B"
    for bigger in ("KB", "MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def _shown(name: str, width: int = 60) -> str:
    """A file or label name safe to show: no control characters, not too long."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    return clean if len(clean) <= width else clean[: width - 1] + "…"


def _listing(names: list[str], width: int = 60) -> str:
    """'a, b, c' or 'a, b, c, d, e and 3 more', each cut to ``width`` characters."""
    shown = ", ".join(_shown(n, width) for n in names[:SHOWN_NAMES])
    more = len(names) - SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _check_upload_size(data: bytes, name: str, limits: Limits) -> None:
    if not data:
        raise InputError(f"'{_shown(name)}' is empty: upload a file with your labelled examples.")
    if len(data) > limits.max_bytes:
        raise InputError(
            f"'{_shown(name)}' is {_size(len(data))}; uploads are limited to {_size(limits.max_bytes)}. "
            "Upload a smaller sample of your data."
        )


def normalise_label(raw: str) -> str:
    """Labels compare equal when they differ only in case or whitespace: ' Positive ' -> 'positive'."""
    return " ".join(raw.replace("\x00", "").split()).lower()


def _normalise_labels(raw_labels: list[str]) -> tuple[list[str], list[str]]:
    """Normalised labels and a note showing a few of the changes (none when nothing changed)."""
    labels = [normalise_label(raw) for raw in raw_labels]
    changes = list(dict.fromkeys((raw, new) for raw, new in zip(raw_labels, labels) if raw != new and new))
    if not changes:
        return labels, []
    shown = ", ".join(f"'{_shown(raw, 30)}' -> '{_shown(new, 30)}'" for raw, new in changes[:3])
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return labels, [f"Labels were lower-cased and trimmed: {shown}{more}."]


# --- tables ----------------------------------------------------------------------------------------
_SPREADSHEET_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # xlsx/ods (zip), xls (OLE)


def _decode(data: bytes, name: str) -> tuple[str, list[str]]:
    """Text of a table: UTF-16 with a BOM, UTF-8 (BOM or not), then cp1252, then latin-1."""
    if data.startswith(_SPREADSHEET_MAGIC):
        raise InputError(
            f"'{_shown(name)}' looks like a spreadsheet or an archive, not a text table. "
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
                f"'{_shown(name)}' has more than {max_rows:,} rows, the limit here. "
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
                f"In '{_shown(name)}' a quote opened on line {opened:,} is never closed, so the rest of the "
                "file would read as one text. Close that quote (or double it: \"\") and upload again."
            ) from err
        rows.clear()
        lines.clear()
        try:
            _collect_rows(text, delimiter, False, max_rows, name, rows, lines)
        except csv.Error as lenient_err:
            raise InputError(
                f"'{_shown(name)}' could not be read as a table ({_shown(str(lenient_err), 80)}). "
                "Upload a CSV or TSV file with a header row and one example per row."
            ) from lenient_err
    if not rows:
        raise InputError(f"'{_shown(name)}' holds no table: the first line should name the columns.")
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
    _check_upload_size(data, name, limits)
    text, notes = _decode(data, name)
    with _keeping(notes):
        if "\x00" in text:
            text = text.replace("\x00", "")
            notes.append("NUL characters were removed.")
        if _looks_binary(text):
            raise InputError(
                f"'{_shown(name)}' does not look like a text table. Upload a CSV or TSV file "
                "with one example per row: a text column and a label column."
            )
        if not text.strip():
            raise InputError(f"'{_shown(name)}' holds no text: upload a CSV with a text column and a label column.")
        delimiter = _detect_delimiter(text)
        rows, line_numbers = _parse_rows(text, delimiter, limits.max_rows, name)
        header = _column_names(rows[0])
        if len(header) < 2:
            raise InputError(
                f"'{_shown(name)}' has only one column. A labelled table needs at least two: the text and its "
                "label, separated by commas, semicolons, tabs or |."
            )
        if len(rows) < 2:
            raise InputError(f"'{_shown(name)}' has a header but no rows of data.")
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
            f"In '{_shown(name)}', {_plural(len(wide), 'row')} ({_lines(wide)}) "
            f"{'has' if len(wide) == 1 else 'have'} more cells than the header's {width}: texts with unquoted "
            f"{cells}, most likely. The extra cells can be joined back into the text only when the label is "
            f"the last column and the text the one before it, which is not so here. Put such texts in double "
            f"quotes ({quoted}), or make the text and label the last two columns, and upload again."
        )
    notes.append(
        f"Joined the extra cells of {_plural(len(wide), 'row')} ({_lines(wide)}) back into the column "
        f"'{_shown(text_col, 30)}': {'its text holds' if len(wide) == 1 else 'their texts hold'} unquoted "
        f"{cells}, and the label ('{_shown(label_col, 30)}') is the last column. "
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
    with _keeping(notes):
        data = _table_columns_to_data(df, text_col, label_col, source, fingerprint, notes)
        validate(data, limits)
    return data


def _table_columns_to_data(df: pd.DataFrame, text_col: str, label_col: str, source: str, fingerprint: str,
                           notes: list[str]) -> LabelledData:
    """The two columns as text data, not yet validated; every change is appended to ``notes``."""
    for col in (text_col, label_col):
        if col not in df.columns:
            raise InputError(f"There is no column '{_shown(str(col))}' in the table; pick one of its columns.")
    if text_col == label_col:
        raise InputError("The text and the label must be two different columns.")
    texts = [str(t).replace("\x00", "").strip() for t in df[text_col].tolist()]
    raw_labels = [str(t) for t in df[label_col].tolist()]
    keep = [i for i, (t, y) in enumerate(zip(texts, raw_labels)) if t and normalise_label(y)]
    if len(keep) < len(texts):
        notes.append(f"Dropped {_plural(len(texts) - len(keep), 'row')} with an empty text or label.")
    texts = [texts[i] for i in keep]
    labels, label_notes = _normalise_labels([raw_labels[i] for i in keep])
    notes += label_notes
    max_chars = get_settings().max_text_chars
    too_long = sum(len(t) > max_chars for t in texts)
    if too_long:
        texts = [t[:max_chars] for t in texts]
        notes.append(f"Cut {_plural(too_long, 'text')} longer than {max_chars:,} characters to {max_chars:,}.")
    return LabelledData("text", texts, labels, notes, fingerprint, source)


# --- zips of class folders -------------------------------------------------------------------------
@dataclass
class _Triage:
    """Members of a zip sorted by what happens to them."""

    images: list = field(default_factory=list)  # (ZipInfo, label)
    unsafe: list[str] = field(default_factory=list)
    system: list[str] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    no_folder: list[str] = field(default_factory=list)
    too_big: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _is_unsafe(info) -> bool:
    """Absolute paths, '..' components and symbolic links: refused, never followed."""
    name = info.filename.replace("\\", "/")
    parts = name.split("/")
    is_link = stat.S_ISLNK(info.external_attr >> 16)
    is_absolute = name.startswith("/") or (len(name) > 1 and name[0].isalpha() and name[1] == ":")
    return is_link or is_absolute or ".." in parts


def _triage(infos: list, limits: Limits) -> _Triage:
    """Sort members by name and declared size, before reading any of them."""
    triage = _Triage()
    for info in sorted(infos, key=lambda i: i.filename):
        if _is_unsafe(info):
            triage.unsafe.append(info.filename)
            continue
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or info.filename.endswith("/"):  # a folder, or a damaged entry with no name (is_dir() raises)
            continue
        if any(p.startswith(".") or p.lower() in SYSTEM_FILES for p in parts):
            triage.system.append(info.filename)
        elif PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
            triage.not_images.append(info.filename)
        elif len(parts) < 2 or not normalise_label(parts[-2]):
            triage.no_folder.append(info.filename)
        elif info.file_size > limits.max_bytes or (
            info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1)
        ):
            triage.too_big.append(f"{_shown(info.filename)} ({_size(info.file_size)} from {_size(info.compress_size)})")
        else:
            triage.images.append((info, parts[-2]))
    return triage


def _read_member(archive, info) -> bytes:
    """The bytes of one member, reading at most its declared size (plus one byte to catch a lie)."""
    if info.flag_bits & 0x1:
        raise InputError("password-protected")
    with archive.open(info) as member:
        blob = member.read(info.file_size + 1)
    if len(blob) != info.file_size:
        raise InputError("its size does not match the zip's directory")
    return blob


def _zip_notes(triage: _Triage, limits: Limits) -> list[str]:
    notes = []
    if triage.unsafe:
        notes.append(
            f"Refused {_plural(len(triage.unsafe), 'entry', 'entries')} for safety (absolute paths, '..' or "
            f"links; nothing is ever extracted): {_listing(triage.unsafe)}."
        )
    if triage.system:
        notes.append(f"Ignored {_plural(len(triage.system), 'system or hidden file')} (__MACOSX, .DS_Store, ...).")
    if triage.not_images:
        notes.append(
            f"Skipped {_plural(len(triage.not_images), 'non-image file')} "
            f"(images are PNG, JPEG, GIF, BMP, WebP or TIFF): {_listing(triage.not_images)}."
        )
    if triage.no_folder:
        notes.append(
            f"Skipped {_plural(len(triage.no_folder), 'image')} not inside a class folder: "
            f"{_listing(triage.no_folder)}."
        )
    if triage.too_big:
        notes.append(
            f"Refused {_plural(len(triage.too_big), 'file')} that would unpack to too much data "
            f"(over {_size(RATIO_FLOOR_BYTES)} and more than {limits.max_ratio}x compressed, or over the upload limit; "
            f"possibly a zip bomb): {_listing(triage.too_big, 120)}."
        )
    if triage.unreadable:
        notes.append(
            f"Skipped {_plural(len(triage.unreadable), 'unusable image')}: {_listing(triage.unreadable, 200)}."
        )
    return notes


def read_image_zip(data: bytes, name: str, limits: Limits = Limits()) -> LabelledData:
    """Read a zip of images with one folder per class, in memory.

    The label of an image is the name of the folder that holds it, at any depth
    (``photos/train/cats/1.jpg`` -> ``cats``). System and hidden files, non-images and images
    outside a folder are skipped; unsafe entries (absolute paths, ``..``, links) and members that
    would unpack to too much are refused; unreadable images are skipped. All of it is noted.

    Args:
        data: the raw upload.
        name: the file name (for messages and the source).
        limits: size, count, ratio and validation bounds.

    Returns:
        LabelledData of kind ``"image"`` with RGB images no larger than ``limits.max_image_side``.

    Raises:
        InputError: not a zip, too large, too many files, too much to unpack, no usable images,
            or data that fails :func:`validate` (a :class:`DataError` carrying the notes on what was
            skipped or refused, once the members are sorted).
    """
    _check_upload_size(data, name, limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except _ZIP_ERRORS as err:
        raise InputError(
            f"'{_shown(name)}' is not a zip file that can be read ({_shown(str(err), 80)}). Zip a folder that "
            "holds one sub-folder of images per class, e.g. cats/1.jpg, dogs/2.jpg."
        ) from err
    with archive:
        triage = _triage(infos, limits)
        with _keeping(_zip_notes(triage, limits)):
            files = len(triage.images) + len(triage.not_images) + len(triage.no_folder) + len(triage.too_big)
            if files > limits.max_files:
                raise InputError(
                    f"'{_shown(name)}' holds {files:,} files; the limit is {limits.max_files:,}. "
                    "Use fewer images per class folder."
                )
            declared = sum(info.file_size for info, _ in triage.images)
            if declared > limits.max_unpacked_bytes:
                raise InputError(
                    f"The images in '{_shown(name)}' would unpack to {_size(declared)}; the limit is "
                    f"{_size(limits.max_unpacked_bytes)}. Use fewer or smaller images."
                )
        items, raw_labels = [], []
        for info, folder in triage.images:
            try:
                image = open_image(_read_member(archive, info), info.filename, limits.max_image_side)
            except InputError as err:
                reason = str(err).removeprefix(info.filename).strip().rstrip(".")
                triage.unreadable.append(f"{_shown(info.filename)} ({_shown(reason, 120)})")
                continue
            except _ZIP_ERRORS as err:
                triage.unreadable.append(f"{_shown(info.filename)} (damaged in the zip: {_shown(str(err), 80)})")
                continue
            items.append(image)
            raw_labels.append(folder)
    notes = _zip_notes(triage, limits)
    with _keeping(notes):
        if not items:
            raise InputError(
                f"No usable images found in '{_shown(name)}'. Put the images in one folder per class "
                "(e.g. cats/1.jpg, dogs/2.jpg) and zip those folders."
            )
        labels, label_notes = _normalise_labels(raw_labels)
        notes += label_notes
        data_out = LabelledData("image", items, labels, notes, fingerprint_bytes(data), f"upload: {name}")
        validate(data_out, limits)
    return data_out


# --- examples --------------------------------------------------------------------------------------
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


# --- validation and splits -------------------------------------------------------------------------
def validate(data: LabelledData, limits: Limits = Limits()) -> None:
    """Check there is enough, and not too much, to train and test on.

    Args:
        data: the labelled data.
        limits: row and class bounds.

    Raises:
        InputError: too many rows, fewer than ``min_classes`` classes, or classes with fewer than
            ``min_per_class`` examples (named, with their counts). For images the message speaks of
            class folders, where their labels come from; for texts, of the label column.
    """
    n = len(data.labels)
    if n > limits.max_rows:
        raise InputError(
            f"The data has {n:,} examples; the limit here is {limits.max_rows:,}. Use a sample of at most "
            f"{limits.max_rows:,}."
        )
    counts = data.class_counts()
    folders = data.kind == "image"  # image labels are the names of the folders that hold them
    if len(counts) < limits.min_classes:
        found = (f"only one class {'folder ' if folders else ''}('{_shown(next(iter(counts)))}')" if counts
                 else "no labelled examples")
        fix = ("Put the images of each class in a folder of their own (e.g. cats/1.jpg, dogs/2.jpg) and zip "
               "those folders together." if folders else
               "Check that you picked the right label column, or add examples of other classes.")
        raise InputError(f"Found {found}; training a classifier needs at least {limits.min_classes} classes. {fix}")
    few = sorted((c for c, k in counts.items() if k < limits.min_per_class), key=lambda c: (counts[c], c))
    if few:
        listed = ", ".join(f"'{_shown(c, 40)}' has {counts[c]}" for c in few[:SHOWN_NAMES])
        more = f" and {len(few) - SHOWN_NAMES} more" if len(few) > SHOWN_NAMES else ""
        fix = ("Add images to these folders or remove the folders." if folders else
               "Add examples to these classes or remove them.")
        hint = ""
        if len(counts) > n / 2:
            hint = (" Almost every folder holds one image: are the images grouped in one folder per class?"
                    if folders else " Almost every label is different: is the label column the right one?")
        each = "class folder needs at least {} images" if folders else "class needs at least {} examples"
        raise InputError(
            f"Each {each.format(limits.min_per_class)} so that some can be held out for testing: "
            f"{listed}{more}. {fix}{hint}"
        )


def split(data: LabelledData, test_size: float = 0.25, seed: int = 0) -> tuple[list[int], list[int]]:
    """A seeded, stratified train/test split, the same for every arm.

    Args:
        data: validated labelled data.
        test_size: the share of examples held out.
        seed: the random seed.

    Returns:
        ``(train_indices, test_indices)``, each sorted.

    Raises:
        InputError: when the data is too small to hold out an example of every class.
    """
    from sklearn.model_selection import train_test_split

    indices = list(range(len(data.labels)))
    try:
        train, test = train_test_split(indices, test_size=test_size, random_state=seed, stratify=data.labels)
    except ValueError as err:
        raise InputError(
            f"The data is too small to hold out {test_size:.0%} of every class for testing ({err}). "
            "Add examples to the smallest classes."
        ) from err
    return sorted(int(i) for i in train), sorted(int(i) for i in test)


def subsample_per_class(train_idx, labels, per_class: int, seed: int = 0) -> list[int]:
    """At most ``per_class`` training examples of each class, seeded.

    Subsets are nested: the examples picked for k are among those picked for any larger k,
    so a label-efficiency curve adds data rather than redrawing it.

    Args:
        train_idx: indices of the training split.
        labels: the labels of all examples (indexed by ``train_idx``).
        per_class: how many examples of each class to keep (classes with fewer keep all).
        seed: the random seed.

    Returns:
        The chosen indices, sorted.

    Raises:
        InputError: ``per_class`` below 1.
    """
    if per_class < 1:
        raise InputError(f"Pick at least one example per class (got {per_class}).")
    by_class: dict[str, list[int]] = {}
    for i in sorted(int(i) for i in train_idx):
        by_class.setdefault(labels[i], []).append(i)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted(by_class):
        members = by_class[label]
        chosen += [members[j] for j in rng.permutation(len(members))[:per_class]]
    return sorted(chosen)


def preview_indices(labels: list[str], most: int = 16) -> list[int]:
    """Indices of up to ``most`` items to preview, taken from each class in turn (a zip lists one class folder
    after another, so its first items are often all of one class)."""
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    queues = [iter(indices) for _, indices in sorted(by_class.items())]
    chosen: list[int] = []
    while queues and len(chosen) < most:
        for queue in list(queues):
            index = next(queue, None)
            if index is None:
                queues.remove(queue)
            elif len(chosen) < most:
                chosen.append(index)
    return chosen
