"""Background training jobs: the server-wide slot, queue places, stop, crashes, and recording runs."""
import threading
import time

import pytest

from core import registry, runs
from core.errors import InputError
from core.finetune import arms, data, jobs, training
from core.finetune import features as feats
from core.progress import Progress
from tests.support import tiny

WAIT_S = 30  # generous bound for a thread to reach a state on a busy machine (not a speed assertion)


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _status(job: jobs.Job, step: int = 0) -> str:
    return job.snapshot()[step].status


def _blocking_step(name: str, gate: threading.Event, started: list) -> jobs.Step:
    """A heavy step that reports progress and waits for the gate (or for stop)."""
    def run(on_progress, should_stop):
        started.append(name)
        on_progress(Progress(0.5, 1.0, "half way", metrics={"step": 1, "epoch": 0.5, "loss": 0.7}))
        while not gate.wait(0.01):
            if should_stop():
                return "stopped"
        return name
    return jobs.Step(name, name, True, run)


def test_slot_is_exclusive_and_first_come_first_served():
    slot, gate, started = jobs.TrainingSlot(), threading.Event(), []
    first = jobs.Job([_blocking_step("first", gate, started)], slot).start()
    _until(lambda: _status(first) == "running", "the first job to run")
    second = jobs.Job([_blocking_step("second", gate, started)], slot).start()
    third = jobs.Job([_blocking_step("third", gate, started)], slot).start()
    _until(lambda: _status(second) == "queued" and _status(third) == "queued", "the others to queue")
    _until(lambda: third.snapshot()[0].place == 2, "the third job to see its place")
    assert second.snapshot()[0].place == 1 and slot.place(first) == 0
    assert started == ["first"] and first.snapshot()[0].message == "half way"
    gate.set()
    for job in (first, second, third):
        assert job.join(WAIT_S)
    assert started == ["first", "second", "third"]
    assert [j.results() for j in (first, second, third)] == [{"first": "first"}, {"second": "second"}, {"third": "third"}]
    assert not slot.busy()


def test_light_steps_do_not_wait_for_the_slot():
    slot, gate, started = jobs.TrainingSlot(), threading.Event(), []
    heavy = jobs.Job([_blocking_step("heavy", gate, started)], slot).start()
    _until(lambda: _status(heavy) == "running", "the heavy job to run")
    light = jobs.Job([jobs.Step("light", "light", False, lambda on_progress, should_stop: 42)], slot).start()
    assert light.join(WAIT_S) and light.results() == {"light": 42}
    gate.set()
    assert heavy.join(WAIT_S)


def test_stop_ends_the_running_step_and_skips_the_rest():
    slot, gate, started = jobs.TrainingSlot(), threading.Event(), []
    job = jobs.Job([_blocking_step("a", gate, started), _blocking_step("b", gate, started)], slot).start()
    _until(lambda: _status(job) == "running", "the job to run")
    job.stop()
    assert job.join(WAIT_S) and job.finished
    states = job.snapshot()
    assert states[0].result == "stopped" and states[1].status == "stopped" and started == ["a"]
    assert not slot.busy()


def test_stop_while_queued_leaves_the_queue():
    slot, gate, started = jobs.TrainingSlot(), threading.Event(), []
    holder = jobs.Job([_blocking_step("holder", gate, started)], slot).start()
    _until(lambda: _status(holder) == "running", "the holder to run")
    waiting = jobs.Job([_blocking_step("waiting", gate, started)], slot).start()
    _until(lambda: _status(waiting) == "queued", "the second job to queue")
    waiting.stop()
    assert waiting.join(WAIT_S)
    assert _status(waiting) == "stopped" and slot.place(waiting) is None and started == ["holder"]
    gate.set()
    assert holder.join(WAIT_S)


def test_a_crash_half_way_releases_the_slot_and_shows_its_error():
    slot = jobs.TrainingSlot()

    def crash(on_progress, should_stop):
        on_progress(Progress(0.4, 1.0, "step 3", metrics={"step": 3, "epoch": 0.4, "loss": 1.2}))
        raise RuntimeError("CUDA out of memory (simulated)")

    def refuse(on_progress, should_stop):
        raise InputError("Each class needs at least 4 examples.")

    job = jobs.Job([jobs.Step("crash", "crash", True, crash), jobs.Step("refuse", "refuse", True, refuse),
                    jobs.Step("after", "after", True, lambda on_progress, should_stop: "ran")], slot).start()
    assert job.join(WAIT_S)
    crashed, refused, after = job.snapshot()
    assert crashed.status == "error" and crashed.error == "RuntimeError: CUDA out of memory (simulated)"
    assert crashed.curve == [{"step": 3, "epoch": 0.4, "loss": 1.2, "accuracy": None, "val_loss": None}]
    assert refused.status == "error" and refused.error == "Each class needs at least 4 examples."
    assert after.status == "done" and after.result == "ran"
    assert not slot.busy()
    again = jobs.Job([jobs.Step("next", "next", True, lambda on_progress, should_stop: "ok")], slot).start()
    assert again.join(WAIT_S) and again.results() == {"next": "ok"}


@pytest.fixture
def sentiment(fresh_cache):
    registry.install("minilm-l6", tiny.bert_encoder())
    feats.FEATURES.clear()
    labelled = data.example_sentiment()
    train, test = data.split(labelled)
    yield labelled, train, test
    feats.FEATURES.clear()


def test_training_job_runs_arms_records_them_and_draws_the_curve(sentiment):
    labelled, train, test = sentiment
    chosen = {"transfer": arms.TransferSettings(), "zero-shot": arms.ZeroShotSettings(),
              "scratch": arms.ScratchSettings()}
    job = training.start_training(labelled, train, test, chosen, session_id="jobs-test", label_curve=True)
    assert job.join(WAIT_S * 4)
    assert [s.name for s in job.snapshot()] == ["zero-shot", "transfer", "scratch", "label-efficiency"]
    assert [s.heavy for s in job.snapshot()] == [False, False, True, False]
    results = job.results()
    assert all(isinstance(results[a], arms.ArmResult) for a in chosen)
    assert {row["approach"] for row in results["label-efficiency"]} == {"use as is", "transfer learning"}
    stored = runs.fetch_runs(session_id="jobs-test")
    assert sorted(stored["approach"]) == ["from scratch", "transfer learning", "use as is"]
    assert set(stored["kind"]) == {"training"} and set(stored["data_fingerprint"]) == {labelled.fingerprint}


def test_stopping_a_fine_tune_job_scores_the_model_as_it_was(sentiment):
    labelled, train, test = sentiment
    slot = jobs.TrainingSlot()
    settings = arms.FineTuneSettings(top_layers=1, epochs=50, batch_size=8)
    job = training.start_training(labelled, train, test, {"fine-tune": settings}, session_id="jobs-stop", slot=slot)
    _until(lambda: len(job.snapshot()[0].curve) >= 3, "a few training steps")
    job.stop()
    assert job.join(WAIT_S * 4)
    state = job.snapshot()[0]
    assert state.status == "stopped" and state.result.stopped
    assert state.result.curve[-1]["step"] < 50 * len(train) / 8
    assert runs.fetch_runs(session_id="jobs-stop")["metrics"][0]["stopped"] == 1
    assert not slot.busy()
