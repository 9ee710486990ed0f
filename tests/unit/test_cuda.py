"""The CUDA path of the text wrappers: the same tiny models on the GPU (float16) agree with the CPU.

Skipped, with the reason shown, on machines without CUDA.
"""
import numpy as np
import pytest
import torch

from core import device, engines, registry, text, textgen
from core.engines import generate
from tests.support import tiny

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture
def on_gpu(monkeypatch, fresh_cache):
    choice = device.DeviceChoice("cuda", "float16", torch.get_num_threads())
    monkeypatch.setattr(device, "_choice", choice)
    monkeypatch.setattr(text, "choose_device", lambda: choice)
    monkeypatch.setattr(textgen, "choose_device", lambda: choice)
    return choice


def test_classifier_on_gpu_matches_cpu(on_gpu):
    cpu = tiny.distilbert_classifier()
    texts = ["I love it", "terrible", "🎉 こんにちは"]
    with torch.inference_mode():
        batch = cpu.tokenizer(texts, padding=True, return_tensors="pt")
        expected = torch.softmax(cpu.model(**batch).logits, -1).max(-1).values.numpy()
    gpu = tiny.distilbert_classifier()
    gpu.model.to("cuda", torch.float16)
    registry.install("distilbert-sst2", gpu)
    result = text.classify(engines.load_sentiment("distilbert-sst2", engines.TORCH), texts)
    np.testing.assert_allclose([p.score for p in result.predictions], expected, atol=2e-2)
    assert result.measurement.device.startswith("cuda")


def test_generation_on_gpu_streams_the_requested_tokens(on_gpu):
    lm = tiny.llama_lm()
    lm.model.to("cuda", torch.float16)
    registry.install("smollm2-135m", lm)
    stream = generate.EngineStream(engines.load("smollm2-135m", engines.TORCH), "Once upon a time", textgen.GenerationSettings(max_new_tokens=12, temperature=1.0, seed=1), stop_at_eos=False)
    assert "".join(stream) == stream.result.text
    assert stream.result.new_tokens == 12
    again = generate.EngineStream(engines.load("smollm2-135m", engines.TORCH), "Once upon a time", textgen.GenerationSettings(max_new_tokens=12, temperature=1.0, seed=1), stop_at_eos=False)
    list(again)
    assert again.result.text == stream.result.text  # seeded on the GPU's own generator


def test_device_choice_picks_cuda_in_float16(monkeypatch):
    monkeypatch.setattr(device, "_choice", None)
    threads = torch.get_num_threads()
    try:
        choice = device.choose_device()
        assert (choice.device, choice.dtype_name) == ("cuda", "float16") and choice.note == ""
    finally:
        torch.set_num_threads(threads)
