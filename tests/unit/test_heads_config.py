"""core.heads round trip and validation; core.config environment parsing; core.device choice."""
import numpy as np
import pytest

from core.config import get_settings
from core.heads import LinearHead


def test_head_round_trip_gives_same_probabilities(tmp_path):
    rng = np.random.default_rng(0)
    head = LinearHead(rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=3).astype(np.float32), ["a", "b", "c"], "minilm-l6", {"accuracy": 0.5})
    head.save(tmp_path)
    again = LinearHead.load(tmp_path)
    x = rng.normal(size=(5, 8)).astype(np.float32)
    np.testing.assert_allclose(head.predict_proba(x), again.predict_proba(x), rtol=1e-6)
    np.testing.assert_allclose(again.predict_proba(x).sum(axis=1), 1.0, rtol=1e-6)
    assert (again.labels, again.encoder, again.record) == (["a", "b", "c"], "minilm-l6", {"accuracy": 0.5})


def test_binary_logistic_head_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4))
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    head = LinearHead.from_sklearn(model, ["neg", "pos"], "enc", {})
    np.testing.assert_allclose(head.predict_proba(x.astype(np.float32)), model.predict_proba(x), atol=1e-5)


def test_head_with_mismatched_labels_is_refused(tmp_path):
    LinearHead(np.zeros((3, 4), np.float32), np.zeros(3, np.float32), ["a", "b"], "enc").save(tmp_path)
    with pytest.raises(ValueError, match="3 rows for 2 labels"):
        LinearHead.load(tmp_path)


def test_settings_come_from_prefixed_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UBT_MEMORY_BUDGET_MB", "900")
    monkeypatch.setenv("UBT_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("UBT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("UBT_CONVERTED_DIR", raising=False)
    get_settings.cache_clear()
    try:
        s = get_settings()
        assert (s.memory_budget_mb, s.model_dir, s.converted_dir, s.offline) == (900, tmp_path, tmp_path / "data" / "converted", True)
    finally:
        get_settings.cache_clear()


def test_device_choice_falls_back_to_cpu_with_a_note(monkeypatch):
    import torch

    from core import device

    monkeypatch.setenv("UBT_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_choice", None)
    get_settings.cache_clear()
    threads = torch.get_num_threads()
    try:
        choice = device.choose_device()
        assert (choice.device, choice.dtype_name) == ("cpu", "float32")
        assert "CUDA was asked for but is not available" in choice.note
    finally:
        get_settings.cache_clear()
        torch.set_num_threads(threads)
