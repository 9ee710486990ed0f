"""core.prepare: one build per target across threads and processes, waiting reported, nothing left over."""
import multiprocessing
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from core.prepare import lock_path, prepare_once

WAIT_LIMIT_S = 60  # only a safety net: the builds below wait for an event, not for a duration


def _build_when_other_waits(tmp: Path, waiting: Path, count: Path) -> None:
    """Count the build, then hold the lock until the other contender has reported that it waits."""
    with open(count, "a") as f:
        f.write("built\n")
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not waiting.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    (tmp / "weights.bin").write_bytes(b"w" * 1000)


def _contender(target: str, folder: str, barrier) -> None:
    folder_path = Path(folder)
    waiting, count = folder_path / "waiting", folder_path / "count"
    barrier.wait()
    done = prepare_once(Path(target), lambda tmp: _build_when_other_waits(tmp, waiting, count),
                        on_progress=lambda update: waiting.write_text(update.message))
    (folder_path / f"ok-{multiprocessing.current_process().pid}").write_text(str(done))


def _leftovers(parent: Path, target: Path) -> set[str]:
    return {p.name for p in parent.iterdir()} - {target.name, lock_path(target).name}


def test_two_processes_at_once_build_once_and_both_succeed(tmp_path, monkeypatch):
    # A spawned child runs the parent's __main__ again; inside pytest that may be a page an AppTest ran last.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    cache, scratch = tmp_path / "converted", tmp_path / "scratch"
    scratch.mkdir()
    target = cache / "model"
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    barrier = context.Barrier(2)
    workers = [context.Process(target=_contender, args=(str(target), str(scratch), barrier)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(WAIT_LIMIT_S * 2)
    assert [w.exitcode for w in workers] == [0, 0]
    assert (scratch / "count").read_text().splitlines() == ["built"]
    assert len(list(scratch.glob("ok-*"))) == 2
    assert "Waiting for another session's conversion of model" in (scratch / "waiting").read_text()
    assert (target / "weights.bin").stat().st_size == 1000
    assert _leftovers(cache, target) == set()


def test_two_threads_at_once_build_once_and_the_waiter_is_told(tmp_path):
    target = tmp_path / "model"
    builds, lines, results = [], [], []
    waiting = threading.Event()

    def build(tmp):
        builds.append(tmp)
        assert waiting.wait(WAIT_LIMIT_S)
        (tmp / "weights.bin").write_bytes(b"w")

    def progress(update):
        lines.append(update.message)
        waiting.set()

    def contender():
        results.append(prepare_once(target, build, progress, what="export"))

    threads = [threading.Thread(target=contender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_LIMIT_S * 2)
    assert len(builds) == 1 and results == [target, target]
    assert lines == ["Waiting for another session's export of model to finish ..."]
    assert (target / "weights.bin").exists() and _leftovers(tmp_path, target) == set()


def test_a_failing_build_leaves_nothing_and_a_later_call_builds(tmp_path):
    target = tmp_path / "model"
    seen = []

    def broken(tmp):
        seen.append(tmp)
        (tmp / "half.bin").write_bytes(b"x" * 100)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        prepare_once(target, broken)
    assert not target.exists() and not seen[0].exists() and _leftovers(tmp_path, target) == set()
    assert prepare_once(target, lambda tmp: (tmp / "ok").write_text("1")) == target
    assert (target / "ok").read_text() == "1" and _leftovers(tmp_path, target) == set()


def test_an_existing_target_is_returned_without_building(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    assert prepare_once(target, lambda tmp: pytest.fail("built again")) == target


def test_a_partial_folder_left_by_a_killed_holder_is_removed(tmp_path):
    target = tmp_path / "model"
    stale = tmp_path / ".model.abc123.partial"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 100)
    prepare_once(target, lambda tmp: (tmp / "ok").write_text("1"))
    assert not stale.exists() and _leftovers(tmp_path, target) == set()
