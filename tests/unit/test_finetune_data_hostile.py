"""Hostile input for fine-tune data: whatever bytes arrive, the result is data or an InputError."""
import io
import zipfile

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.errors import InputError
from core.finetune import data as fd
from core.finetune.data import LabelledData, Limits

pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zips we build on purpose
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = Limits(max_bytes=200_000, max_rows=50, max_files=40, max_unpacked_bytes=2_000_000, min_per_class=1,
               max_image_side=32)


def _png(color: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (3, 2), (color, 0, 255 - color)).save(buf, "PNG")
    return buf.getvalue()


PNGS = [_png(c) for c in (0, 128, 255)]
CELL_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(
    list(',;\t|"\'\n\r\x00 \ufeffé€'))
CELL = st.text(CELL_CHARS, max_size=12)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"])
# zip member names that exercise every path through the triage
NAMES = st.sampled_from([
    "cats/a.png", "dogs/b.png", "x/y/z/cats/c.PNG", "loose.png", "../evil.png", "/abs.png", "a/../../b.png",
    "C:/win.png", "__MACOSX/cats/._a.png", "cats/.DS_Store", ".hidden/d.png", "readme.txt", "cats/",
    "dogs\\e.png", "./cats/f.jpg", " /g.gif", "cats/ /h.png",
]) | st.text(st.sampled_from("ab./\\.: é"), min_size=1, max_size=12)
CONTENT = st.sampled_from(PNGS) | st.binary(max_size=64)
COMPRESSION = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])


def _check_table_pipeline(raw: bytes) -> None:
    """read_table -> guess_columns -> table_to_data either works or says why, in an InputError."""
    try:
        df = fd.read_table(raw, "hostile.csv", SMALL)
    except InputError as err:
        assert str(err)
        return
    assert isinstance(df, pd.DataFrame) and df.shape[1] >= 2 and len(df) >= 1
    assert all(isinstance(v, str) for v in df.to_numpy().ravel())
    text_col, label_col = fd.guess_columns(df)
    assert text_col != label_col and {text_col, label_col} <= set(df.columns)
    try:
        data = fd.table_to_data(df, text_col, label_col, "upload: hostile.csv", "f", SMALL)
    except InputError as err:
        assert str(err)
        return
    assert len(data.items) == len(data.labels) >= 2
    assert all(t and "\x00" not in t for t in data.items)
    assert all(y == fd.normalise_label(y) and y for y in data.labels)


def _check_zip(raw: bytes) -> None:
    try:
        data = fd.read_image_zip(raw, "hostile.zip", SMALL)
    except InputError as err:
        assert str(err)
        return
    assert isinstance(data, LabelledData) and data.kind == "image"
    assert len(data.items) == len(data.labels) >= 2
    assert all(im.mode == "RGB" and max(im.size) <= 32 for im in data.items)


@SETTINGS
@given(st.binary(max_size=4096))
def test_read_table_on_arbitrary_bytes(raw):
    _check_table_pipeline(raw)


@SETTINGS
@given(st.lists(st.lists(CELL, min_size=0, max_size=5), min_size=0, max_size=12),
       st.sampled_from(list(fd.DELIMITERS)), ENCODINGS, st.booleans())
def test_read_table_on_arbitrary_text_tables(rows, delimiter, encoding, quote_all):
    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if quote_all else value

    text = "\n".join(delimiter.join(cell(v) for v in row) for row in rows)
    _check_table_pipeline(text.encode(encoding, errors="replace"))


@SETTINGS
@given(st.binary(max_size=4096) | st.builds(lambda tail: b"PK\x03\x04" + tail, st.binary(max_size=512))
       | st.builds(lambda head: head + b"PK\x05\x06" + bytes(18), st.binary(max_size=512)))
def test_read_image_zip_on_arbitrary_bytes(raw):
    _check_zip(raw)


@SETTINGS
@given(st.lists(st.tuples(NAMES, CONTENT, COMPRESSION, st.booleans()), max_size=10),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=4))
def test_read_image_zip_on_arbitrary_and_damaged_zips(members, damage):
    base = [("cats/1.png", PNGS[0], zipfile.ZIP_STORED, False), ("dogs/1.png", PNGS[1], zipfile.ZIP_DEFLATED, False)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, content, compression, link in base + members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if link:
                info.create_system, info.external_attr = 3, 0o120777 << 16
            archive.writestr(info, content)
    raw = bytearray(buf.getvalue())
    for where, value in damage:
        raw[int(where * len(raw))] = value
    _check_zip(bytes(raw))


def test_quadratic_sniffer_input_is_refused_or_read():
    """csv.Sniffer's regexes are quadratic: a long line of quotes and commas must not stall the parser."""
    raw = b'text,label\n' + b',"a' * 30_000 + b"\n"
    _check_table_pipeline(raw)


@SETTINGS
@given(st.lists(st.tuples(NAMES, CONTENT), max_size=8),
       st.sampled_from(["../evil.png", "/abs.png", "a/../../b.png", "C:/win.png", "cats/../../c.png"]),
       st.sampled_from([(), ("cats",), ("cats", "dogs")]))
def test_refused_entries_are_noted_whatever_follows(members, unsafe, classes):
    """A refused entry is said, whether the zip then gives data or an error: notes survive errors."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, content in [(f"{c}/1.png", PNGS[k]) for k, c in enumerate(classes)] + members + [(unsafe, PNGS[2])]:
            archive.writestr(name, content)
    try:
        notes = fd.read_image_zip(buf.getvalue(), "hostile.zip", SMALL).notes
    except fd.DataError as err:
        notes = err.notes
    assert any(note.startswith("Refused") and "for safety" in note for note in notes)
