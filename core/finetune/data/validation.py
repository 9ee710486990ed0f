"""Whether labelled data is enough to train and test on, and the one seeded split every arm shares."""
from __future__ import annotations

import numpy as np

from core.errors import InputError
from core.finetune.data.base import SHOWN_NAMES, LabelledData, Limits, shown_name


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
        found = (f"only one class {'folder ' if folders else ''}('{shown_name(next(iter(counts)))}')" if counts
                 else "no labelled examples")
        fix = ("Put the images of each class in a folder of their own (e.g. cats/1.jpg, dogs/2.jpg) and zip "
               "those folders together." if folders else
               "Check that you picked the right label column, or add examples of other classes.")
        raise InputError(f"Found {found}; training a classifier needs at least {limits.min_classes} classes. {fix}")
    few = sorted((c for c, k in counts.items() if k < limits.min_per_class), key=lambda c: (counts[c], c))
    if few:
        listed = ", ".join(f"'{shown_name(c, 40)}' has {counts[c]}" for c in few[:SHOWN_NAMES])
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
