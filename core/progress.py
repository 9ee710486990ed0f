"""The one progress type every long call reports through, and the one way it is asked to stop.

A long call (a training arm, a diffusion loop, a batch of hosted calls, a transcription) takes
``on_progress: OnProgress`` and ``should_stop: ShouldStop`` and calls them between units of work, as
diffusers' ``callback_on_step_end`` does. Pages turn the updates into ``st.progress``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Progress:
    """One update from a long call.

    Attributes:
        done: units done so far (steps, items, seconds of audio; or a fraction when ``total`` is 1).
        total: units in all (0 when unknown).
        message: one line for people.
        elapsed_s: seconds since the work started, where the call keeps a clock.
        preview: an approximate picture of the work so far (image generation), or None.
        metrics: figures of the moment, by name (training: ``step``, ``epoch``, ``loss``, ``accuracy``,
            ``val_loss``).
    """

    done: float
    total: float
    message: str = ""
    elapsed_s: float | None = None
    preview: Any = None
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def note(cls, message: str) -> "Progress":
        """An update that only says something: a line of one-time work (a conversion, an export, a wait)."""
        return cls(0, 0, message)

    @property
    def fraction(self) -> float:
        """0-1: how much of the work is done."""
        return min(1.0, max(0.0, self.done / self.total)) if self.total else 0.0


OnProgress = Callable[[Progress], None]
ShouldStop = Callable[[], bool]


def ignore(update: Progress) -> None:
    """An :data:`OnProgress` that drops every update."""


def never() -> bool:
    """A :data:`ShouldStop` that never asks to stop."""
    return False
