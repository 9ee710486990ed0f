"""Zips of images with one folder per class, read in memory: never extracted, members checked on their
declared sizes first, then read with a bounded read. Unsafe, oversized and unreadable members are refused or
skipped, and all of it is noted."""
from __future__ import annotations

import io
import lzma
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core.errors import InputError
from core.finetune.data.base import (LabelledData, Limits, check_upload_size, keeping_notes, listing,
                                     normalise_label, normalise_labels, plural, shown_name, size_text)
from core.finetune.data.validation import validate
from core.images import open_image
from core.runs import fingerprint as fingerprint_bytes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx"}
RATIO_FLOOR_BYTES = 2**20  # members that unpack to less than this cannot hurt, whatever their ratio

# What zipfile raises on damaged or unsupported archives and members.
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
               zlib.error, lzma.LZMAError)


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
            triage.too_big.append(f"{shown_name(info.filename)} ({size_text(info.file_size)} from {size_text(info.compress_size)})")
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
            f"Refused {plural(len(triage.unsafe), 'entry', 'entries')} for safety (absolute paths, '..' or "
            f"links; nothing is ever extracted): {listing(triage.unsafe)}."
        )
    if triage.system:
        notes.append(f"Ignored {plural(len(triage.system), 'system or hidden file')} (__MACOSX, .DS_Store, ...).")
    if triage.not_images:
        notes.append(
            f"Skipped {plural(len(triage.not_images), 'non-image file')} "
            f"(images are PNG, JPEG, GIF, BMP, WebP or TIFF): {listing(triage.not_images)}."
        )
    if triage.no_folder:
        notes.append(
            f"Skipped {plural(len(triage.no_folder), 'image')} not inside a class folder: "
            f"{listing(triage.no_folder)}."
        )
    if triage.too_big:
        notes.append(
            f"Refused {plural(len(triage.too_big), 'file')} that would unpack to too much data "
            f"(over {size_text(RATIO_FLOOR_BYTES)} and more than {limits.max_ratio}x compressed, or over the upload limit; "
            f"possibly a zip bomb): {listing(triage.too_big, 120)}."
        )
    if triage.unreadable:
        notes.append(
            f"Skipped {plural(len(triage.unreadable), 'unusable image')}: {listing(triage.unreadable, 200)}."
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
    check_upload_size(data, name, limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except _ZIP_ERRORS as err:
        raise InputError(
            f"'{shown_name(name)}' is not a zip file that can be read ({shown_name(str(err), 80)}). Zip a folder that "
            "holds one sub-folder of images per class, e.g. cats/1.jpg, dogs/2.jpg."
        ) from err
    with archive:
        triage = _triage(infos, limits)
        with keeping_notes(_zip_notes(triage, limits)):
            files = len(triage.images) + len(triage.not_images) + len(triage.no_folder) + len(triage.too_big)
            if files > limits.max_files:
                raise InputError(
                    f"'{shown_name(name)}' holds {files:,} files; the limit is {limits.max_files:,}. "
                    "Use fewer images per class folder."
                )
            declared = sum(info.file_size for info, _ in triage.images)
            if declared > limits.max_unpacked_bytes:
                raise InputError(
                    f"The images in '{shown_name(name)}' would unpack to {size_text(declared)}; the limit is "
                    f"{size_text(limits.max_unpacked_bytes)}. Use fewer or smaller images."
                )
        items, raw_labels = [], []
        for info, folder in triage.images:
            try:
                image = open_image(_read_member(archive, info), info.filename, limits.max_image_side)
            except InputError as err:
                reason = str(err).removeprefix(info.filename).strip().rstrip(".")
                triage.unreadable.append(f"{shown_name(info.filename)} ({shown_name(reason, 120)})")
                continue
            except _ZIP_ERRORS as err:
                triage.unreadable.append(f"{shown_name(info.filename)} (damaged in the zip: {shown_name(str(err), 80)})")
                continue
            items.append(image)
            raw_labels.append(folder)
    notes = _zip_notes(triage, limits)
    with keeping_notes(notes):
        if not items:
            raise InputError(
                f"No usable images found in '{shown_name(name)}'. Put the images in one folder per class "
                "(e.g. cats/1.jpg, dogs/2.jpg) and zip those folders."
            )
        labels, label_notes = normalise_labels(raw_labels)
        notes += label_notes
        data_out = LabelledData("image", items, labels, notes, fingerprint_bytes(data), f"upload: {name}")
        validate(data_out, limits)
    return data_out
