"""Small widgets the family pages share: example buttons, an image grid, user text shown literally."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

GRID_COLUMNS = 4


def _fill(key: str, value: str, lines_key: str | None) -> None:
    st.session_state[key] = value
    if lines_key:  # an example of several lines is meant one text per line
        st.session_state[lines_key] = "\n" in value


def example_buttons(examples: dict[str, str], target: str, key: str, lines_key: str | None = None) -> None:
    """One button per example in a row; a click puts the example into the widget keyed ``target``.

    Args:
        examples: button label -> text.
        target: the key of the text widget to fill.
        key: a prefix for the buttons' keys (``{key}_{label}``).
        lines_key: a toggle turned on when the example has several lines (one text per line), off otherwise.
    """
    for column, (name, value) in zip(st.columns(len(examples)), examples.items()):
        column.button(name, key=f"{key}_{name}", on_click=_fill, args=(target, value, lines_key), width="stretch")


def grid(items: list, render: Callable[[Any], None]) -> None:
    """Lay items out GRID_COLUMNS per row; ``render(item)`` draws one inside its column."""
    for start in range(0, len(items), GRID_COLUMNS):
        for column, item in zip(st.columns(GRID_COLUMNS), items[start : start + GRID_COLUMNS]):
            with column:
                render(item)


def plain(text: str) -> str:
    """User text (labels, prompts, captions that continue a prefix) shown literally inside markdown."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|<>~$:" else ch for ch in text)
