"""Threads that take turns in a :class:`core.queue.TurnQueue`, coordinated by events, never by sleeping."""
from __future__ import annotations

import threading

from core.queue import Place, TurnQueue

WAIT_S = 10  # generous upper bound on any wait; a pass never waits for it


def wait_until(queue: TurnQueue, serving: tuple, waiting: tuple) -> None:
    """Block until the queue's snapshot is (serving, waiting), woken by its own changes."""
    with queue._changed:
        assert queue._changed.wait_for(lambda: (tuple(t.kind for t in queue._serving),
                                                tuple(t.kind for t in queue._waiting)) == (serving, waiting), WAIT_S), \
            queue.snapshot()


class Holder:
    """A thread that takes a turn of ``kind`` and holds it until released; records its places and order."""

    def __init__(self, queue: TurnQueue, kind: str, served: list, fail: bool = False) -> None:
        self.places: list[Place] = []
        self.told = threading.Condition()
        self.release = threading.Event()
        self.error: BaseException | None = None

        def tell(place: Place) -> None:
            with self.told:
                self.places.append(place)
                self.told.notify_all()

        def work() -> None:
            try:
                with queue.turn(kind, on_wait=tell, poll_s=0.05):
                    served.append(kind)
                    assert self.release.wait(WAIT_S)
                    if fail:
                        raise RuntimeError("model failed")
            except BaseException as err:  # kept for the test to look at
                self.error = err

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def wait_told(self, place: Place) -> None:
        """Block until this waiter has been told ``place``."""
        with self.told:
            assert self.told.wait_for(lambda: place in self.places, WAIT_S), self.places

    def finish(self) -> None:
        self.release.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()
