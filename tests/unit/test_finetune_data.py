"""Fine-tune data in: tables, zips of class folders, examples, validation and splits."""
import io
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from collections import Counter

import pytest
from PIL import Image

from core.errors import InputError
from core.finetune import data as fd
from core.finetune.data import LabelledData, Limits

SMALL = Limits(min_per_class=2)


# --- helpers ---------------------------------------------------------------------------------------
def png(color=(200, 30, 30), size=(6, 5), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else 7).save(buf, "PNG")
    return buf.getvalue()


def make_zip(members: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip in memory; values are bytes, or (ZipInfo, bytes) for hand-made entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, content in members.items():
            if isinstance(content, tuple):
                archive.writestr(*content)
            else:
                archive.writestr(name, content)
    return buf.getvalue()


def class_folders(classes=("cats", "dogs"), per_class: int = 4, prefix: str = "") -> dict:
    colors = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    return {f"{prefix}{c}/{i}.png": png(colors[k % 3]) for k, c in enumerate(classes) for i in range(per_class)}


def table(rows, delimiter=",", header=("text", "label")) -> bytes:
    lines = [delimiter.join(header)] + [delimiter.join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- tables ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_detected_when_texts_hold_other_delimiters(delimiter):
    others = "".join(d for d in ",;|" if d != delimiter)
    rows = [(f"good{others[0]} really good {others[1]} yes", "pos"), (f"bad {others[0]} awful", "neg")] * 3
    df = fd.read_table(table(rows, delimiter), "t.csv")
    assert list(df.columns) == ["text", "label"]
    assert df.shape == (6, 2)
    assert df.iloc[0, 0] == rows[0][0]


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_quoted_fields_keep_their_delimiters_and_newlines(delimiter):
    raw = (f'text{delimiter}label\n"a, b; c | d"{delimiter}pos\n"line one\nline two"{delimiter}neg\n'
           f'"say ""hi"""{delimiter}pos\n').encode()
    df = fd.read_table(raw, "q.csv")
    assert df["text"].tolist() == ["a, b; c | d", "line one\nline two", 'say "hi"']
    assert df["label"].tolist() == ["pos", "neg", "pos"]


@pytest.mark.parametrize("encoding,note", [
    ("utf-8", None), ("utf-8-sig", None), ("cp1252", "cp1252"), ("utf-16", None)])
def test_encodings(encoding, note):
    raw = "text;label\ncafé à 5 €;bon\nnaïve façade;bon\n".encode(encoding)
    df = fd.read_table(raw, "e.csv")
    assert list(df.columns) == ["text", "label"]  # no BOM left in the first column name
    assert df["text"].tolist() == ["café à 5 €", "naïve façade"]
    notes = " ".join(df.attrs["notes"])
    assert (note in notes) if note else notes == ""


def test_latin1_is_the_last_resort():
    raw = b"text,label\nsmall \x81 byte caf\xe9,x\n"  # 0x81 is undefined in cp1252
    df = fd.read_table(raw, "l.csv")
    assert df["text"].tolist() == ["small \x81 byte café"]
    assert "Latin-1" in df.attrs["notes"][0]


def test_all_columns_are_text_and_missing_cells_empty():
    df = fd.read_table(b"id,text,label\n001,hello,1\n002,,NA\n003,short\n", "m.csv")
    assert df["id"].tolist() == ["001", "002", "003"]
    assert df["label"].tolist() == ["1", "NA", ""]
    assert all(isinstance(v, str) for v in df.to_numpy().ravel())


def test_rows_with_too_many_cells_are_joined_back_into_the_text_when_the_label_is_last():
    df = fd.read_table(b"text,label\na,x\nb,y,extra\nc,z\n", "b.csv")
    assert df["text"].tolist() == ["a", "b,y", "c"]
    assert df["label"].tolist() == ["x", "extra", "z"]
    assert df.attrs["notes"] == ["Joined the extra cells of 1 row (line 3) back into the column 'text': its text "
                                 "holds unquoted commas, and the label ('label') is the last column. Quote such "
                                 "texts to be sure they are read as meant."]


def test_unquoted_commas_in_half_the_texts_keep_every_row_and_the_right_columns():
    """A hand-made CSV: every other text holds commas. Before, half the rows vanished and the guess swapped."""
    texts = [("works well", "pos"), ("broke, sadly, after a day", "neg"), ("love it", "pos"),
             ("meh, not worth it", "neg"), ("great value", "pos"), ("awful, awful, awful", "neg")] * 2
    raw = ("words,tag\n" + "".join(f"{t},{y}\n" for t, y in texts)).encode()
    df = fd.read_table(raw, "hand.csv")
    assert df["words"].tolist() == [t for t, _ in texts] and df["tag"].tolist() == [y for _, y in texts]
    assert fd.guess_columns(df) == ("words", "tag")
    assert df.attrs["notes"][0].startswith("Joined the extra cells of 6 rows (lines 3, 5, 7, 9, 11 and 1 more) "
                                           "back into the column 'words': their texts hold unquoted commas")


def test_extra_cells_go_into_the_column_before_the_label_and_other_columns_stay():
    raw = b"id;review;label\n1;fine;pos\n2;bad; very bad;neg\n3;ok;pos\n4;poor;neg\n"
    df = fd.read_table(raw, "s.csv")
    assert df.to_numpy().tolist() == [["1", "fine", "pos"], ["2", "bad; very bad", "neg"], ["3", "ok", "pos"],
                                      ["4", "poor", "neg"]]
    assert "unquoted semicolons" in df.attrs["notes"][0]


def test_rows_with_too_many_cells_are_refused_with_their_lines_when_the_label_is_not_last():
    rows = "".join(f"{'pos' if i % 2 else 'neg'},text {i}, with a comma\n" if i in (2, 5, 9) else
                   f"{'pos' if i % 2 else 'neg'},text {i}\n" for i in range(10))
    with pytest.raises(InputError) as err:
        fd.read_table(("label,text\n" + rows).encode(), "first.csv")
    message = str(err.value)
    assert "3 rows (lines 4, 7, 11) have more cells than the header's 2" in message
    assert "only when the label is the last column" in message and 'double quotes ("like, this")' in message


def test_label_normalisation_is_noted():
    raw = table([("great", "Positive "), ("fine", "positive"), ("meh", " NEGATIVE"), ("bad", "negative")] * 2)
    df = fd.read_table(raw, "n.csv")
    data = fd.table_to_data(df, "text", "label", "upload: n.csv", "f" * 64, SMALL)
    assert data.labels == ["positive", "positive", "negative", "negative"] * 2
    assert data.classes() == ["negative", "positive"]
    assert data.class_counts() == {"negative": 4, "positive": 4}
    assert data.notes == ["Labels were lower-cased and trimmed: 'Positive ' -> 'positive', "
                          "' NEGATIVE' -> 'negative'."]
    assert (data.kind, data.source, data.fingerprint) == ("text", "upload: n.csv", "f" * 64)


def test_table_notes_survive_a_validation_error():
    """Dropped rows, mended rows and the encoding are all said, even when the data cannot be used."""
    rows = "".join(f"text {i},b\n" for i in range(6)) + "".join(f"empty {i},\n" for i in range(5)) + "x, y,b\n"
    df = fd.read_table(("text,label\n" + rows).encode(), "one.csv")
    with pytest.raises(fd.DataError, match=r"only one class \('b'\).*right label column") as err:
        fd.table_to_data(df, "text", "label", "s", "f")
    assert [note.split(" ")[0] for note in err.value.notes] == ["Joined", "Dropped"]
    assert err.value.notes[1] == "Dropped 5 rows with an empty text or label."


def test_table_notes_survive_a_read_error():
    raw = "label,text\nä,b,c\n".encode("cp1252")
    with pytest.raises(fd.DataError, match="more cells than the header") as err:
        fd.read_table(raw, "t.csv")
    assert err.value.notes == ["The file is not UTF-8; it was read as Windows-1252 (cp1252)."]


def test_empty_rows_dropped_and_noted():
    rows = [("good", "pos"), ("", "pos"), ("bad", "  "), ("nice", "pos"), ("awful", "neg"), ("ok", "pos"),
            ("poor", "neg"), (" ", "neg"), ("fine", "pos"), ("dire", "neg"), ("grim", "neg")]
    data = fd.table_to_data(fd.read_table(table(rows), "e.csv"), "text", "label", "s", "f")
    assert data.items == ["good", "nice", "awful", "ok", "poor", "fine", "dire", "grim"]
    assert data.notes == ["Dropped 3 rows with an empty text or label."]


def test_nuls_stripped_and_long_texts_cut():
    long_text = "x" * 6000
    rows = [(long_text, "a"), ("fi\x00ne", "a"), ("ok", "a"), ("yes", "a")] + [("no", "b")] * 4
    df = fd.read_table(table(rows), "c.csv")
    data = fd.table_to_data(df, "text", "label", "s", "f")
    assert data.items[0] == "x" * 5000 and data.items[1] == "fine"
    assert "NUL characters were removed." in data.notes
    assert "Cut 1 text longer than 5,000 characters to 5,000." in data.notes


def test_guess_columns_by_distinct_values_and_length():
    df = fd.read_table(table([(str(i), "a long review text number %d" % i, "xy"[i % 2]) for i in range(8)],
                             header=("n", "body2", "c")), "g.csv")
    assert fd.guess_columns(df) == ("body2", "c")


def test_guess_columns_prefers_named_columns():
    rows = [(f"some text {i}", "abc"[i % 3], "ab"[i % 2]) for i in range(9)]
    df = fd.read_table(table(rows, header=("review", "label", "source")), "g.csv")
    assert fd.guess_columns(df) == ("review", "label")


def test_guess_columns_keeps_a_named_label_column_that_holds_one_class():
    df = fd.read_table(table([(f"text {i}", "b") for i in range(6)]), "one.csv")
    assert fd.guess_columns(df) == ("text", "label")  # so that validation can say "only one class ('b')"


def test_table_to_data_refuses_bad_column_choices():
    df = fd.read_table(table([("a", "b")]), "t.csv")
    with pytest.raises(InputError, match="no column 'nope'"):
        fd.table_to_data(df, "nope", "label", "s", "f")
    with pytest.raises(InputError, match="two different columns"):
        fd.table_to_data(df, "text", "text", "s", "f")


def test_fewer_than_two_classes():
    df = fd.read_table(table([("t%d" % i, "Same") for i in range(6)]), "t.csv")
    with pytest.raises(InputError, match=r"only one class \('same'\).*at least 2 classes"):
        fd.table_to_data(df, "text", "label", "s", "f")


def test_too_few_per_class_names_the_classes_and_counts():
    rows = [("t", "big")] * 6 + [("t", "tiny")] + [("t", "small")] * 3
    df = fd.read_table(table(rows), "t.csv")
    with pytest.raises(InputError) as err:
        fd.table_to_data(df, "text", "label", "s", "f")
    assert "at least 4 examples" in str(err.value)
    assert "'tiny' has 1, 'small' has 3" in str(err.value)
    assert "big" not in str(err.value)


def test_label_column_with_unique_values_gets_a_hint():
    df = fd.read_table(table([(f"t{i}", f"label {i}") for i in range(10)]), "t.csv")
    with pytest.raises(InputError, match="and 5 more.*right one"):
        fd.table_to_data(df, "text", "label", "s", "f")


def test_too_many_rows():
    raw = table([(f"t{i}", "ab"[i % 2]) for i in range(11)])
    with pytest.raises(InputError, match="more than 10 rows"):
        fd.read_table(raw, "t.csv", Limits(max_rows=10))
    assert len(fd.read_table(raw, "t.csv", Limits(max_rows=11))) == 11
    data = LabelledData("text", ["t"] * 30, ["a", "b"] * 15)
    with pytest.raises(InputError, match="30 examples; the limit here is 20"):
        fd.validate(data, Limits(max_rows=20))


def test_too_many_bytes_and_empty_upload():
    with pytest.raises(InputError, match="limited to 100 B"):
        fd.read_table(b"x" * 101, "big.csv", Limits(max_bytes=100))
    with pytest.raises(InputError, match="limited to 100 B"):
        fd.read_image_zip(b"x" * 101, "big.zip", Limits(max_bytes=100))
    with pytest.raises(InputError, match="is empty"):
        fd.read_table(b"", "e.csv")


@pytest.mark.parametrize("raw,message", [
    (b"just one column\nhello\nworld\n", "only one column"),
    (b"text,label\n", "no rows"),
    (b"label,text\na,b,c\n", r"1 row \(line 2\) has more cells than the header's 2"),
    (b"   \n\n", "no text"),
    (b"PK\x03\x04\x14\x00rest of an xlsx", "spreadsheet"),
    (bytes(range(1, 32)) * 20, "does not look like a text table"),
    (b'text,label\na,x\n"never closed,x\nb,y\n', "quote opened on line 3 is never closed"),
    (b"text,label\n" + b"x" * 200_000 + b",y\n", "could not be read as a table"),
])
def test_tables_that_cannot_be_used(raw, message):
    with pytest.raises(InputError, match=message):
        fd.read_table(raw, "bad.csv")


# --- zips of class folders -------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "photos/train/set/"])
def test_class_folders_at_any_depth(prefix):
    data = fd.read_image_zip(make_zip(class_folders(prefix=prefix)), "pets.zip", SMALL)
    assert data.kind == "image" and data.source == "upload: pets.zip"
    assert data.class_counts() == {"cats": 4, "dogs": 4}
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" and im.size == (6, 5) for im in data.items)
    assert data.items[0].getpixel((0, 0)) == (250, 0, 0)
    assert data.notes == []


def test_fingerprint_is_sha256_of_the_upload():
    import hashlib

    raw = make_zip(class_folders())
    assert fd.read_image_zip(raw, "z.zip").fingerprint == hashlib.sha256(raw).hexdigest()


def test_folder_names_normalised_and_images_converted_and_shrunk():
    members = {f"Big Cats/{i}.png": png(size=(1000, 400)) for i in range(4)}
    members |= {f"dogs/{i}.gif": png(mode="P") for i in range(4)}
    data = fd.read_image_zip(make_zip(members), "z.zip", Limits(max_image_side=100))
    assert data.classes() == ["big cats", "dogs"]
    assert {im.size for im in data.items} == {(100, 40), (6, 5)}
    assert all(im.mode == "RGB" for im in data.items)
    assert data.notes == ["Labels were lower-cased and trimmed: 'Big Cats' -> 'big cats'."]


def test_junk_ignored_and_noted():
    members = class_folders() | {
        "__MACOSX/cats/._0.png": b"\x00\x05\x16\x07 resource fork",
        "cats/.DS_Store": b"\x00\x00\x00\x01Bud1",
        ".hidden/x.png": png(),
        "readme.txt": b"my cats and dogs",
        "loose.png": png(),
        "cats/": b"",
    }
    data = fd.read_image_zip(make_zip(members), "z.zip")
    assert len(data.items) == 8
    assert data.notes == [
        "Ignored 3 system or hidden files (__MACOSX, .DS_Store, ...).",
        "Skipped 1 non-image file (images are PNG, JPEG, GIF, BMP, WebP or TIFF): readme.txt.",
        "Skipped 1 image not inside a class folder: loose.png.",
    ]


def test_unreadable_image_reported_and_skipped():
    members = class_folders(per_class=5) | {"cats/broken.png": b"\x89PNG\r\n\x1a\nnot really"}
    data = fd.read_image_zip(make_zip(members), "z.zip")
    assert data.class_counts() == {"cats": 5, "dogs": 5}
    assert len(data.notes) == 1
    assert data.notes[0].startswith("Skipped 1 unusable image: cats/broken.png (")


def _png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG whose header declares width x height but holds almost no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_image_declaring_huge_dimensions_is_skipped_without_decoding():
    members = class_folders() | {"cats/huge.png": _png_declaring(60_000, 60_000)}
    data = fd.read_image_zip(make_zip(members), "z.zip")
    assert len(data.items) == 8
    assert data.notes[0].startswith("Skipped 1 unusable image: cats/huge.png")


@pytest.fixture(scope="module")
def bomb_member() -> bytes:
    """cats/bomb.png: 200 MB of zeros, deflated to about 200 KB, in a zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("cats/bomb.png", "w", force_zip64=True) as member:
            chunk = bytes(2**20)
            for _ in range(200):
                member.write(chunk)
    return buf.getvalue()


@pytest.fixture
def bytes_read(monkeypatch):
    """Counts every byte read out of any zip member."""
    total = {"bytes": 0}
    original = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        out = original(self, n)
        total["bytes"] += len(out)
        return out

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    return total


def test_zip_bomb_refused_before_reading(bomb_member, bytes_read):
    assert len(bomb_member) < 1_000_000
    buf = io.BytesIO(bomb_member)  # the bomb alongside real class folders
    with zipfile.ZipFile(buf, "a") as archive:
        for name, content in class_folders().items():
            archive.writestr(name, content)
    data = fd.read_image_zip(buf.getvalue(), "bomb.zip")
    assert data.class_counts() == {"cats": 4, "dogs": 4}
    assert data.notes[0].startswith("Refused 1 file that would unpack to too much data")
    assert "cats/bomb.png (200 MB from " in data.notes[0]
    assert bytes_read["bytes"] < 100_000  # only the eight small images were read


def test_zip_bomb_alone_is_refused(bomb_member, bytes_read):
    with pytest.raises(fd.DataError, match="No usable images") as err:
        fd.read_image_zip(bomb_member, "bomb.zip")
    assert err.value.notes[0].startswith("Refused 1 file that would unpack to too much data")
    assert bytes_read["bytes"] == 0


def test_lying_declared_size_is_caught_by_the_bounded_read(bytes_read):
    liar = png() * 50
    raw = bytearray(make_zip(class_folders() | {"cats/liar.png": liar}, zipfile.ZIP_STORED))
    # shrink liar.png's declared size in the central directory to 10 bytes
    at = raw.rfind(b"cats/liar.png") - 46
    assert raw[at:at + 4] == b"PK\x01\x02"
    raw[at + 24:at + 28] = struct.pack("<I", 10)
    data = fd.read_image_zip(bytes(raw), "z.zip")
    assert len(data.items) == 8
    assert "cats/liar.png" in data.notes[0] and "unusable" in data.notes[0]
    honest = sum(len(v) for v in class_folders().values())
    assert bytes_read["bytes"] <= honest + 11  # the eight images, and at most 10 + 1 bytes of the liar


def test_too_much_to_unpack_in_total():
    members = class_folders()
    limits = Limits(max_unpacked_bytes=sum(len(v) for v in members.values()) - 1)
    with pytest.raises(InputError, match="would unpack to .*; the limit is"):
        fd.read_image_zip(make_zip(members), "z.zip", limits)


def test_too_many_files():
    with pytest.raises(InputError, match="holds 8 files; the limit is 5"):
        fd.read_image_zip(make_zip(class_folders()), "z.zip", Limits(max_files=5))


def test_unsafe_paths_refused_and_nothing_written(tmp_path, monkeypatch):
    def no_extraction(*args, **kwargs):
        raise AssertionError("nothing may be extracted")

    monkeypatch.setattr(zipfile.ZipFile, "extract", no_extraction)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_extraction)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    evil = {"../evil.png": png(), "/abs.png": png(), "a/../../b.png": png(), "C:/win/c.png": png(),
            "cats/../../../../d.png": png()}
    data = fd.read_image_zip(make_zip(class_folders() | evil), "z.zip")
    assert len(data.items) == 8
    assert data.notes == [
        "Refused 5 entries for safety (absolute paths, '..' or links; nothing is ever extracted): "
        "../evil.png, /abs.png, C:/win/c.png, a/../../b.png, cats/../../../../d.png."
    ]
    assert list(work.iterdir()) == []
    assert list(tmp_path.iterdir()) == [work]
    for folder in (tmp_path.parent, tmp_path.parent.parent, tempfile.gettempdir(), "/"):
        for name in ("evil.png", "abs.png", "b.png", "d.png"):
            assert not os.path.exists(os.path.join(folder, name))


def test_symlink_entry_refused():
    link = zipfile.ZipInfo("cats/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    members = class_folders() | {"cats/link.png": (link, "/etc/passwd")}
    data = fd.read_image_zip(make_zip(members), "z.zip")
    assert len(data.items) == 8
    assert data.notes[0].startswith("Refused 1 entry for safety") and data.notes[0].endswith(": cats/link.png.")


@pytest.mark.parametrize("raw", [b"definitely not a zip", png(), b"PK\x05\x06" + bytes(18)])
def test_not_a_zip(raw):
    with pytest.raises(InputError, match="not a zip file|No usable images"):
        fd.read_image_zip(raw, "photos.zip")


def test_zip_validated_like_tables_and_worded_in_folders():
    with pytest.raises(InputError, match="Each class folder needs at least 4 images .*'dogs' has 2. Add images"):
        fd.read_image_zip(make_zip(class_folders(("cats",)) | class_folders(("dogs",), per_class=2)), "z.zip")
    with pytest.raises(InputError, match=r"only one class folder \('cats'\).*a folder of their own") as err:
        fd.read_image_zip(make_zip(class_folders(("cats",))), "z.zip")
    assert "column" not in str(err.value)


def test_zip_notes_survive_a_validation_error(bomb_member):
    """The issue's zip: one class folder, a '../' entry and a zip bomb. The error comes with every note."""
    buf = io.BytesIO(bomb_member)
    with zipfile.ZipFile(buf, "a") as archive:
        for name, content in class_folders(("b",)).items():
            archive.writestr(name, content)
        archive.writestr("../escape.png", png())
        archive.writestr("readme.txt", b"hi")
    with pytest.raises(fd.DataError) as err:
        fd.read_image_zip(buf.getvalue(), "hostile.zip")
    assert str(err.value).startswith("Found only one class folder ('b')")
    assert "label column" not in str(err.value)
    assert [note.split(" ")[:2] for note in err.value.notes] == [["Refused", "1"], ["Skipped", "1"], ["Refused", "1"]]
    assert "../escape.png" in err.value.notes[0] and "readme.txt" in err.value.notes[1]
    assert "cats/bomb.png (200 MB from" in err.value.notes[2]


def test_zip_notes_survive_a_too_many_files_error():
    members = class_folders() | {"../escape.png": png()}
    with pytest.raises(fd.DataError, match="holds 8 files") as err:
        fd.read_image_zip(make_zip(members), "z.zip", Limits(max_files=5))
    assert err.value.notes[0].startswith("Refused 1 entry for safety")


# --- examples, split, subsample --------------------------------------------------------------------
def test_example_sentiment():
    data = fd.example_sentiment()
    assert (data.kind, data.source) == ("text", "example: sentiment")
    assert data.classes() == ["negative", "positive"]
    assert len(data.items) == len(data.labels) > 100
    assert all(isinstance(t, str) and t for t in data.items)
    assert len(data.fingerprint) == 64


def test_example_digits():
    full = fd.example_digits()
    assert len(full.items) == 1797 and full.classes() == [str(d) for d in range(10)]
    few = fd.example_digits(per_class=5)
    assert few.class_counts() == {str(d): 5 for d in range(10)}
    image = few.items[0]
    assert (image.mode, image.size) == ("RGB", (32, 32))
    assert image.getpixel((0, 0)) == (255, 255, 255)  # white background, dark ink
    assert min(image.convert("L").getdata()) < 64
    assert few.source == "example: digits" and few.fingerprint != full.fingerprint


def test_split_is_stratified_and_deterministic():
    labels = ["a"] * 40 + ["b"] * 20 + ["c"] * 4
    data = LabelledData("text", ["t"] * len(labels), labels)
    train, test = fd.split(data, test_size=0.25, seed=0)
    assert (train, test) == fd.split(data, test_size=0.25, seed=0)
    assert fd.split(data, seed=1) != (train, test)
    assert sorted(train + test) == list(range(len(labels)))
    assert Counter(labels[i] for i in test) == {"a": 10, "b": 5, "c": 1}
    assert all(isinstance(i, int) for i in train + test)


def test_split_of_smallest_valid_data_holds_out_every_class():
    data = LabelledData("text", ["t"] * 12, ["a", "b", "c"] * 4)
    fd.validate(data)
    _, test = fd.split(data)
    assert sorted(data.labels[i] for i in test) == ["a", "b", "c"]
    with pytest.raises(InputError, match="too small to hold out"):
        fd.split(data, test_size=0.1)


def test_subsample_per_class():
    labels = ["a"] * 10 + ["b"] * 6 + ["c"] * 2
    train = list(range(18))
    picked = fd.subsample_per_class(train, labels, 3, seed=0)
    assert Counter(labels[i] for i in picked) == {"a": 3, "b": 3, "c": 2}
    assert picked == sorted(picked) == fd.subsample_per_class(train, labels, 3, seed=0)
    assert set(picked) <= set(fd.subsample_per_class(train, labels, 5, seed=0))  # nested
    assert fd.subsample_per_class(train[:12], labels, 100) == train[:12]
    assert all(i in train[:12] for i in fd.subsample_per_class(train[:12], labels, 2, seed=3))
    with pytest.raises(InputError):
        fd.subsample_per_class(train, labels, 0)


def test_the_preview_shows_some_of_each_class_not_the_first_folder_only():
    labels = ["cat"] * 30 + ["dog"] * 30 + ["owl"] * 2
    shown = fd.preview_indices(labels, most=8)
    assert [labels[i] for i in shown] == ["cat", "dog", "owl", "cat", "dog", "owl", "cat", "dog"]
    assert len(set(shown)) == 8
    assert fd.preview_indices(["a"] * 3) == [0, 1, 2] and fd.preview_indices([]) == []
