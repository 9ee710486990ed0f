"""core.engines.runner: llama.cpp in a process of its own, on the real packaged SmolLM2 GGUF. A crash of the
runner (SIGSEGV, SIGKILL) in the middle of a stream ends that stream with one line; the next request starts a new
runner; a runner that dies during its first load on this machine marks its engine as failing, and auto falls back."""
import os
import signal

import pytest

from core import engines, registry
from core.catalog import get_spec
from core.engines import generate, runner
from core.errors import EngineStopped
from core.textgen import GenerationSettings
from tests.support.openai_servers import needs_llama

pytestmark = [pytest.mark.real_model, needs_llama]

KEY = "smollm2-135m"
LONG = GenerationSettings(max_new_tokens=200, temperature=0.7, seed=1)
GREEDY = GenerationSettings(max_new_tokens=16, temperature=0.0)


@pytest.fixture
def health(monkeypatch, tmp_path):
    """A health file of this test's own, so a mark made here does not reach other tests."""
    monkeypatch.setattr(runner, "HEALTH_FILE", f"health-{tmp_path.name}.json")
    yield
    (registry.sources.get_settings().data_dir / runner.HEALTH_FILE).unlink(missing_ok=True)


@pytest.fixture
def lm(health):
    path = registry.resolve(get_spec(KEY)).location
    handle = runner.RunnerLM(engines.LLAMACPP, "llama.cpp", "core.engines.llamacpp:load", (path, True, 1))
    yield handle
    handle.close()


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
def test_a_runner_killed_mid_stream_ends_that_stream_in_one_line_and_the_next_request_starts_a_new_one(lm, sig):
    ids, seen, first_pid = lm.prompt_ids("Tell me a long story about a lighthouse."), 0, lm.pid
    with pytest.raises(EngineStopped) as stopped:
        for _ in lm.generate_ids(ids, LONG):
            seen += 1
            if seen == 3:
                os.kill(lm.pid, sig)
    assert 3 <= seen < LONG.max_new_tokens
    message = str(stopped.value)
    assert message == f"The llama.cpp runner stopped (signal {sig.value}, {sig.name}); the next request starts it again."
    assert "\n" not in message and lm.pid is None
    again = list(lm.generate_ids(ids, GREEDY))  # a fresh runner
    assert len(again) == GREEDY.max_new_tokens and lm.pid not in (None, first_pid)
    assert runner.failing(engines.LLAMACPP) == ""  # it had loaded here before: a later crash marks nothing


def test_a_reader_that_stops_early_leaves_the_runner_serving(lm):
    ids = lm.prompt_ids("Name three colours.")
    tokens = lm.generate_ids(ids, LONG)
    next(tokens)
    tokens.close()
    greedy = list(lm.generate_ids(ids, GREEDY))
    assert greedy == list(lm.generate_ids(ids, GREEDY))  # same runner, same greedy tokens: no stale message between
    assert lm.decode(greedy) and lm.pid is not None


def test_the_runners_memory_counts_in_the_result(health, fresh_cache):
    stream = generate.EngineStream(engines.load(KEY, engines.LLAMACPP), "Say hello.", GREEDY)
    text = "".join(stream)
    lm = stream.loaded.model
    assert isinstance(lm, runner.RunnerLM) and text == stream.result.text
    assert lm.last_peak is not None and lm.last_peak >= 50  # the runner holds the weights and the KV cache
    from core.measure import rss_mb

    assert stream.result.measurement.peak_mb >= lm.last_peak + 0.9 * rss_mb()  # this process's and the runner's together
    assert lm.memory_mb() >= 50


def test_a_runner_that_dies_in_its_first_load_here_marks_its_engine_failing_and_auto_falls_back(health, monkeypatch):
    with pytest.raises(EngineStopped, match=r"stopped while loading the model \(signal 11, SIGSEGV\)"):
        runner.RunnerLM(engines.LLAMACPP, "llama.cpp", "tests.support.crashing_runner:load", ())
    assert "first load and warm-up here (signal 11, SIGSEGV)" in runner.failing(engines.LLAMACPP)
    assert this_machine_in(runner.machine_key(engines.LLAMACPP))
    resolution = registry.resolve(get_spec(KEY))
    choice = engines.choose_generation_engine(resolution)
    assert choice.engine == engines.CTRANSLATE2
    assert "llama.cpp (GGUF as packaged) failed on this machine" in choice.note
    assert engines.LLAMACPP not in engines.generation_engines(resolution)


def this_machine_in(key: str) -> bool:
    from core.cpu import this_cpu

    return this_cpu().model in key and this_cpu().kind in key


def test_a_python_error_while_loading_is_an_error_and_marks_nothing(health):
    with pytest.raises(RuntimeError, match="ValueError"):
        runner.RunnerLM(engines.LLAMACPP, "llama.cpp", "core.engines.llamacpp:load", ("/nonexistent.gguf", True, 1))
    assert runner.failing(engines.LLAMACPP) == ""


def test_a_generation_that_started_a_fresh_runner_reports_that_start_as_its_load(health, fresh_cache):
    first = generate.EngineStream(engines.load(KEY, engines.LLAMACPP), "Say hello.", GREEDY)
    "".join(first)
    lm = first.loaded.model
    os.kill(lm.pid, signal.SIGKILL)
    lm.process.wait()
    again = generate.EngineStream(engines.load(KEY, engines.LLAMACPP), "Say hello.", GREEDY)
    "".join(again)
    load_s = again.result.measurement.load_s
    assert load_s is not None and load_s > 0  # not "cached": the request paid for a new runner
    assert again.result.measurement.latency_s > 0 and lm.take_restart_s() is None
