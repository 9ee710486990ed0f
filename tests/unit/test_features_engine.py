"""Fine-tune features: a sentence encoder runs on the same encoder engine as sentiment (ONNX Runtime where its
export agrees), a classifier's base model on PyTorch; both give the PyTorch features."""
import numpy as np

from core import engines, registry
from core.engines import onnx
from core.finetune import features as feats
from tests.support import tiny

TEXTS = ["I love it", "it broke after a day and the seller never answered", "ok", "great 🎉"]


def _torch_features(key):
    import torch

    backbone = feats.text_backbone(registry.load(key))
    with torch.inference_mode():
        return feats.pooled(backbone.model, feats.tokenize(backbone, TEXTS, "cpu")).numpy()


def test_sentence_encoder_features_come_from_onnx_runtime_and_match_torch(fresh_cache):
    registry.install("minilm-l6", tiny.bert_encoder())
    values, loaded = feats.encode_texts("minilm-l6", TEXTS)
    assert isinstance(loaded.model, onnx.OnnxEncoder)
    assert values.dtype == np.float32 and values.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(values, _torch_features("minilm-l6"), atol=1e-5)


def test_without_onnx_runtime_features_come_from_torch(fresh_cache, monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda name: name == engines.TORCH)
    registry.install("minilm-l6", tiny.bert_encoder())
    values, loaded = feats.encode_texts("minilm-l6", TEXTS)
    assert not isinstance(loaded.model, onnx.OnnxEncoder)
    np.testing.assert_allclose(values, _torch_features("minilm-l6"), atol=1e-6)


def test_a_classifiers_base_model_stays_on_torch(fresh_cache):
    registry.install("distilbert-sst2", tiny.distilbert_classifier())
    values, loaded = feats.encode_texts("distilbert-sst2", TEXTS)
    assert loaded.model is registry.load("distilbert-sst2").model
    np.testing.assert_allclose(values, _torch_features("distilbert-sst2"), atol=1e-6)
