"""What every reader of labelled data shares: :class:`LabelledData`, :class:`Limits`, :class:`DataError`, and
the helpers that write messages about untrusted names and sizes safely."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from core.errors import InputError

SHOWN_NAMES = 5


class DataError(InputError):
    """An InputError raised after notes were made (rows dropped, zip entries refused): they go with it.

    Attributes:
        notes: what was changed or skipped before the error, written for people.
    """

    def __init__(self, message: str, notes: list[str] | None = None) -> None:
        super().__init__(message)
        self.notes = list(notes or [])


@contextmanager
def keeping_notes(notes: list[str]):
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


# --- helpers for messages and labels ------------------------------------------------------------
def size_text(n: int) -> str:
    """Bytes for people: '512 B', '3.2 KB', '50 MB'."""
    value, unit = float(n), "B"
    for bigger in ("KB", "MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def shown_name(name: str, width: int = 60) -> str:
    """A file or label name safe to show: no control characters, not too long."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    return clean if len(clean) <= width else clean[: width - 1] + "…"


def listing(names: list[str], width: int = 60) -> str:
    """'a, b, c' or 'a, b, c, d, e and 3 more', each cut to ``width`` characters."""
    shown = ", ".join(shown_name(n, width) for n in names[:SHOWN_NAMES])
    more = len(names) - SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def plural(n: int, word: str, plural_word: str | None = None) -> str:
    """'1 row', '3 rows' (``plural_word`` when adding an s will not do)."""
    return f"{n:,} {word if n == 1 else (plural_word or word + 's')}"


def check_upload_size(data: bytes, name: str, limits: Limits) -> None:
    """Refuse an empty upload, or one over ``limits.max_bytes``."""
    if not data:
        raise InputError(f"'{shown_name(name)}' is empty: upload a file with your labelled examples.")
    if len(data) > limits.max_bytes:
        raise InputError(
            f"'{shown_name(name)}' is {size_text(len(data))}; uploads are limited to {size_text(limits.max_bytes)}. "
            "Upload a smaller sample of your data."
        )


def normalise_label(raw: str) -> str:
    """Labels compare equal when they differ only in case or whitespace: ' Positive ' -> 'positive'."""
    return " ".join(raw.replace("\x00", "").split()).lower()


def normalise_labels(raw_labels: list[str]) -> tuple[list[str], list[str]]:
    """Normalised labels and a note showing a few of the changes (none when nothing changed)."""
    labels = [normalise_label(raw) for raw in raw_labels]
    changes = list(dict.fromkeys((raw, new) for raw, new in zip(raw_labels, labels) if raw != new and new))
    if not changes:
        return labels, []
    shown = ", ".join(f"'{shown_name(raw, 30)}' -> '{shown_name(new, 30)}'" for raw, new in changes[:3])
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return labels, [f"Labels were lower-cased and trimmed: {shown}{more}."]
