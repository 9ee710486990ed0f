"""A fair line for model calls: every session's inference waits its turn, first come, first served.

On a small server, model calls that run at the same time share the same few cores, so each of them slows
down, a long generation most of all. :class:`TurnQueue` lets ``slots`` calls run at once and lines up the
others in the order they asked; a waiting caller learns its place and what it waits behind, so a page can
say so. Used from many Streamlit script threads at once: it is one object per process, thread-safe.

    with line().turn("generate", on_wait=lambda place: print(place.describe())):
        ...  # the model call

A holder that raises, and a waiter that is interrupted (a rerun, a stop), leave the line as if they had
never been in it.

With ``first_turn_alone`` (the app's line), the first turn of each kind runs with no other turn beside it: a
first call imports and loads libraries, and two threads importing torch at once can see it half initialised
("partially initialized module 'torch'", seen with 8 slots in bench/many_people.py).
"""
from __future__ import annotations

import itertools
import threading
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

POLL_S = 0.5  # how often a waiter re-checks its place, at most (it is woken at once when a turn ends)


@dataclass(frozen=True)
class Place:
    """Where a waiting turn stands.

    Attributes:
        position: 1 = next to be served.
        ahead: the kinds of the turns ahead of it (being served first, then waiting), in order.
    """

    position: int
    ahead: tuple[str, ...]

    def describe(self) -> str:
        """One line for a page, e.g. "2nd in line behind 1 generate and 2 classify"."""
        counts = Counter(self.ahead)
        kinds = " and ".join(f"{n} {kind}" for kind, n in counts.items())
        return f"{_ordinal(self.position)} in line" + (f" behind {kinds}" if kinds else "")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(eq=False)
class _Ticket:
    number: int
    kind: str
    alone: bool = False


class TurnQueue:
    """A first-in, first-out line of turns with ``slots`` turns served at once."""

    def __init__(self, slots: int = 1, first_turn_alone: bool = False) -> None:
        """Args:
            slots: how many turns run at the same time (at least 1).
            first_turn_alone: a kind's turns run alone until one of them has ended without an error.
        """
        self.slots = max(1, int(slots))
        self.first_turn_alone = first_turn_alone
        self._warm: set[str] = set()  # kinds with a turn that ended without an error
        self._changed = threading.Condition()
        self._waiting: deque[_Ticket] = deque()
        self._serving: list[_Ticket] = []
        self._numbers = itertools.count()

    def _place(self, ticket: _Ticket) -> Place | None:
        """The ticket's place while it must wait; None when it may be served now (call with the lock held)."""
        index = self._waiting.index(ticket)
        room = len(self._serving) < self.slots and not any(t.alone for t in self._serving)
        if index == 0 and room and not (ticket.alone and self._serving):
            return None
        ahead = [t.kind for t in self._serving] + [t.kind for t in itertools.islice(self._waiting, index)]
        return Place(index + 1, tuple(ahead))

    @contextmanager
    def turn(self, kind: str, on_wait: Callable[[Place], None] | None = None,
             poll_s: float = POLL_S) -> Iterator[None]:
        """Wait for a turn, hold it inside the ``with`` block, give it back on the way out (errors included).

        Args:
            kind: what the turn is for, in a word ("classify", "generate"); others see it in their Place.
            on_wait: called, outside the lock, with this turn's Place each time it changes while it waits
                (not called at all when a slot is free at once). An exception it raises leaves the line.
            poll_s: the longest wait between checks of the place.

        Yields:
            None, once this turn is served.
        """
        told = None
        with self._changed:
            ticket = _Ticket(next(self._numbers), kind, self.first_turn_alone and kind not in self._warm)
            self._waiting.append(ticket)
            self._changed.notify_all()
        try:
            while True:
                with self._changed:
                    place = self._place(ticket)
                    if place is None:
                        self._waiting.remove(ticket)
                        self._serving.append(ticket)
                        self._changed.notify_all()
                        break
                    if place == told:
                        self._changed.wait(poll_s)
                        continue
                told = place
                if on_wait is not None:
                    on_wait(place)
        except BaseException:
            with self._changed:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._changed.notify_all()
            raise
        try:
            yield
            with self._changed:
                self._warm.add(kind)
        finally:
            with self._changed:
                self._serving.remove(ticket)
                self._changed.notify_all()

    def snapshot(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The kinds being served and the kinds waiting, in order (for tests and displays)."""
        with self._changed:
            return tuple(t.kind for t in self._serving), tuple(t.kind for t in self._waiting)


_line: TurnQueue | None = None
_line_lock = threading.Lock()


def default_slots() -> int:
    """Turns served at once: ``UBT_MODEL_SLOTS`` when set, else half the torch threads, at least 1 (1 on 2
    cores), so each call keeps its threads."""
    from core.config import get_settings
    from core.device import thread_plan

    return get_settings().model_slots or max(1, thread_plan()[0] // 2)


def line() -> TurnQueue:
    """The process's one line for model calls, made on first use with :func:`default_slots` slots; each kind's
    first turn runs alone."""
    global _line
    with _line_lock:
        if _line is None:
            _line = TurnQueue(default_slots(), first_turn_alone=True)
        return _line
