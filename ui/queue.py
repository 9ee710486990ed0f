"""A model call's turn in the server's line (core/queue.py), with the page saying where it waits."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from core.queue import Place, line


def queued_text(place: Place) -> str:
    """What the page says while a call waits, e.g. "Queued: 2nd in line behind 1 generate and 1 classify ..."."""
    return (f"Queued: {place.describe()}. Model calls take turns on this server, for everyone, so each runs at "
            "full speed; yours starts by itself.")


@contextmanager
def model_turn(kind: str) -> Iterator[None]:
    """Hold a turn for a model call; while it waits, an info box where this is called says its place in line
    (updated as the line moves), and it is cleared when the turn is served. Nothing is drawn without a wait.

    Args:
        kind: what the call is, in a word ("classify", "generate", "transcribe"); others see it in their place.
    """
    slot = st.empty()
    with line().turn(kind, on_wait=lambda place: slot.info(queued_text(place), icon=":material/schedule:")):
        slot.empty()
        yield
