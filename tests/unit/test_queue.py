"""The fair line for model calls (core/queue.py): FIFO order, places told to waiters, release on errors,
and the page's "Queued" note (ui/queue.py). Threads are coordinated by events, never by sleeping."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from core.queue import Place, TurnQueue
from tests.support.turns import WAIT_S, Holder, wait_until

def test_one_slot_serves_in_arrival_order_and_tells_each_waiter_its_place():
    queue, served = TurnQueue(1), []
    first = Holder(queue, "generate", served)
    wait_until(queue, ("generate",), ())
    second = Holder(queue, "classify", served)
    wait_until(queue, ("generate",), ("classify",))
    second.wait_told(Place(1, ("generate",)))
    third = Holder(queue, "transcribe", served)
    wait_until(queue, ("generate",), ("classify", "transcribe"))
    third.wait_told(Place(2, ("generate", "classify")))

    assert first.places == []  # served at once: never told to wait
    assert second.places == [Place(1, ("generate",))]
    assert third.places == [Place(2, ("generate", "classify"))]
    assert third.places[0].describe() == "2nd in line behind 1 generate and 1 classify"

    first.finish()
    wait_until(queue, ("classify",), ("transcribe",))
    third.wait_told(Place(1, ("classify",)))  # moved up when the first left
    assert third.places[0] == Place(2, ("generate", "classify")) and third.places[-1] == Place(1, ("classify",))
    second.finish()
    third.finish()
    assert served == ["generate", "classify", "transcribe"]
    assert queue.snapshot() == ((), ())


def test_later_arrivals_never_overtake_a_waiter():
    queue, served = TurnQueue(1), []
    holders = [Holder(queue, "generate", served)]
    wait_until(queue, ("generate",), ())
    for n in range(5):
        holders.append(Holder(queue, f"k{n}", served))
        wait_until(queue, ("generate",), tuple(f"k{i}" for i in range(n + 1)))
    for holder in holders:
        holder.finish()
    assert served == ["generate", "k0", "k1", "k2", "k3", "k4"]


def test_two_slots_serve_two_at_once():
    queue, served = TurnQueue(2), []
    a, b = Holder(queue, "a", served), None
    wait_until(queue, ("a",), ())
    b = Holder(queue, "b", served)
    wait_until(queue, ("a", "b"), ())
    c = Holder(queue, "c", served)
    wait_until(queue, ("a", "b"), ("c",))
    c.wait_told(Place(1, ("a", "b")))
    assert b.places == [] and c.places == [Place(1, ("a", "b"))]
    b.finish()
    wait_until(queue, ("a", "c"), ())
    a.finish()
    c.finish()
    assert served == ["a", "b", "c"]


def test_a_holder_that_raises_gives_its_turn_back():
    queue, served = TurnQueue(1), []
    failing = Holder(queue, "generate", served, fail=True)
    wait_until(queue, ("generate",), ())
    waiter = Holder(queue, "classify", served)
    wait_until(queue, ("generate",), ("classify",))
    failing.finish()
    assert isinstance(failing.error, RuntimeError)
    wait_until(queue, ("classify",), ())  # the next one is served: no deadlock
    waiter.finish()
    assert waiter.error is None and queue.snapshot() == ((), ())


def test_a_waiter_interrupted_by_its_callback_leaves_the_line():
    queue, served = TurnQueue(1), []
    holder = Holder(queue, "generate", served)
    wait_until(queue, ("generate",), ())

    class Stopped(BaseException):  # as Streamlit stops a script run
        pass

    def stop(place: Place) -> None:
        raise Stopped

    with pytest.raises(Stopped):
        with queue.turn("classify", on_wait=stop):
            pytest.fail("an interrupted waiter must not be served")
    assert queue.snapshot() == (("generate",), ())
    later = Holder(queue, "transcribe", served)
    wait_until(queue, ("generate",), ("transcribe",))
    holder.finish()
    later.finish()
    assert served == ["generate", "transcribe"]


def test_many_threads_at_once_are_each_served_once_and_never_overlap():
    queue, lock, inside, most, served = TurnQueue(2), threading.Lock(), [0], [0], []

    def work(n: int) -> None:
        with queue.turn(f"k{n}"):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                served.append(n)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert sorted(served) == list(range(40)) and most[0] <= 2
    assert queue.snapshot() == ((), ())


@pytest.mark.parametrize("n, word", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                                     (21, "21st"), (22, "22nd"), (113, "113th")])
def test_places_are_ordinals(n, word):
    assert Place(n, ()).describe() == f"{word} in line"


def test_queue_imports_without_streamlit():
    code = "import sys, core.queue; assert 'streamlit' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_page_says_queued_while_waiting_and_clears_it_when_served(monkeypatch):
    from streamlit.delta_generator import DeltaGenerator
    from streamlit.testing.v1 import AppTest

    import ui.queue

    line, shown = TurnQueue(1), []
    original_info = DeltaGenerator.info

    def spy(self, body, *args, **kwargs):  # what the page drew while waiting (the final page no longer has it)
        shown.append(body)
        return original_info(self, body, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "info", spy)
    monkeypatch.setattr(ui.queue, "line", lambda: line)
    holder = Holder(line, "generate", [])
    wait_until(line, ("generate",), ())
    threading.Thread(target=lambda: (wait_until(line, ("generate",), ("classify",)), holder.finish()),
                     daemon=True).start()
    at = AppTest.from_string(
        "import streamlit as st\nfrom ui.queue import model_turn\n"
        "with model_turn('classify'):\n    st.write('result')\n", default_timeout=WAIT_S)
    at.run()
    assert not at.exception
    assert shown == [ui.queue.queued_text(Place(1, ("generate",)))]
    assert shown[0].startswith("Queued: 1st in line behind 1 generate.")
    assert not at.info and [m.value for m in at.markdown] == ["result"]
    assert line.snapshot() == ((), ())


def test_the_page_draws_nothing_when_a_turn_is_free(monkeypatch):
    from streamlit.testing.v1 import AppTest

    import ui.queue

    monkeypatch.setattr(ui.queue, "line", lambda: TurnQueue(1))
    at = AppTest.from_string("import streamlit as st\nfrom ui.queue import model_turn\n"
                             "with model_turn('classify'):\n    st.write('result')\n", default_timeout=WAIT_S)
    at.run()
    assert not at.exception and not at.info and [m.value for m in at.markdown] == ["result"]


@pytest.mark.parametrize("env, expected", [("0", "auto"), ("3", 3)])
def test_slots_come_from_ubt_model_slots_else_half_the_threads(monkeypatch, env, expected):
    from core.config import get_settings
    from core.device import thread_plan
    from core.queue import default_slots

    monkeypatch.setenv("UBT_MODEL_SLOTS", env)
    get_settings.cache_clear()
    try:
        assert default_slots() == (max(1, thread_plan()[0] // 2) if expected == "auto" else expected)
    finally:
        monkeypatch.delenv("UBT_MODEL_SLOTS")
        get_settings.cache_clear()


def test_a_kinds_first_turn_runs_alone_then_turns_share_the_slots():
    queue, served = TurnQueue(2, first_turn_alone=True), []
    first = Holder(queue, "classify", served)
    wait_until(queue, ("classify",), ())
    other = Holder(queue, "generate", served)  # a slot is free, but the first classify imports alone
    wait_until(queue, ("classify",), ("generate",))
    other.wait_told(Place(1, ("classify",)))
    first.finish()
    wait_until(queue, ("generate",), ())  # generate's first turn is alone too
    late = Holder(queue, "classify", served)
    wait_until(queue, ("generate",), ("classify",))
    other.finish()
    wait_until(queue, ("classify",), ())
    again = Holder(queue, "generate", served)  # both kinds have run once: two at once
    wait_until(queue, ("classify", "generate"), ())
    late.finish()
    again.finish()
    assert served == ["classify", "generate", "classify", "generate"]


def test_a_first_turn_that_fails_leaves_the_kind_cold():
    queue, served = TurnQueue(2, first_turn_alone=True), []
    failing = Holder(queue, "caption", served, fail=True)
    wait_until(queue, ("caption",), ())
    failing.finish()
    retry = Holder(queue, "caption", served)
    wait_until(queue, ("caption",), ())
    beside = Holder(queue, "classify", served)
    wait_until(queue, ("caption",), ("classify",))  # the retry is still a first use: alone
    retry.finish()
    beside.finish()
    assert served == ["caption", "caption", "classify"]
