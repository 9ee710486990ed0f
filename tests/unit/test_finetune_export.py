"""Export a trained head and import it back: same predictions; tampered files give InputError."""
import ast
import io
import json
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save

from core import registry
from core.errors import InputError
from core.finetune import arms, data, export
from core.finetune import features as feats
from core.heads import LinearHead
from tests.support import tiny

TEXTS = ["I love it, works perfectly.", "Broke after a day, awful.", "ok i guess"]


@pytest.fixture(scope="module")
def head():
    """A head trained by the transfer arm on the shipped CSV with the tiny encoder."""
    registry.CACHE.clear()
    registry.install("minilm-l6", tiny.bert_encoder())
    feats.FEATURES.clear()
    labelled = data.example_sentiment()
    train, test = data.split(labelled)
    trained = arms.run_transfer(labelled, train, test, arms.TransferSettings()).head
    yield trained
    feats.FEATURES.clear()
    registry.CACHE.clear()


def _unzip(raw: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _files(weight, bias, labels=("negative", "positive"), encoder="minilm-l6", **tensors) -> list[tuple[str, bytes]]:
    arrays = {"weight": np.asarray(weight, np.float32), "bias": np.asarray(bias, np.float32), **tensors}
    config = json.dumps({"labels": list(labels), "encoder": encoder}).encode()
    return [("head.safetensors", save(arrays)), ("head.json", config)]


def test_zip_roundtrip_gives_the_same_predictions(head):
    registry.install("minilm-l6", tiny.bert_encoder())
    raw = export.export_zip(head)
    assert sorted(_unzip(raw)) == ["README.md", "head.json", "head.safetensors"]
    loaded = export.load_head([("sentiment-head.zip", raw)])
    assert loaded.labels == head.labels and loaded.encoder == "minilm-l6"
    np.testing.assert_array_equal(loaded.weight, head.weight)
    np.testing.assert_array_equal(loaded.bias, head.bias)
    assert loaded.record["held_out_accuracy"] == head.record["held_out_accuracy"]
    features, _ = feats.encode_texts("minilm-l6", TEXTS)
    expected = head.predict_proba(features)
    got = export.predict(loaded, TEXTS)
    assert [label for label, _ in got] == [head.labels[i] for i in expected.argmax(axis=1)]
    assert [p for _, p in got] == pytest.approx(expected.max(axis=1).tolist(), abs=1e-6)


def test_two_files_roundtrip_and_head_folder_compatibility(head, tmp_path):
    files = _unzip(export.export_zip(head))
    loaded = export.load_head([("head.safetensors", files["head.safetensors"]), ("head.json", files["head.json"])])
    np.testing.assert_array_equal(loaded.weight, head.weight)
    for name in ("head.safetensors", "head.json"):
        (tmp_path / name).write_bytes(files[name])
    assert LinearHead.load(tmp_path).labels == head.labels  # the project's own loader reads it too


def test_readme_and_snippet(head):
    readme = _unzip(export.export_zip(head))["README.md"].decode()
    snippet = export.snippet(head)
    assert snippet in readme and "sentence-transformers/all-MiniLM-L6-v2" in snippet
    assert f"{head.record['held_out_accuracy']:.1%}" in readme
    ast.parse(snippet)  # valid Python
    config = json.loads(_unzip(export.export_zip(head))["head.json"])
    assert config["kind"] == "text" and config["preprocessing"]["normalise"] == "L2"


def test_snippet_decision_matches_the_head(head, tmp_path, monkeypatch):
    """The snippet's loading and decision part, run on the exported files, decides as the head does."""
    for name, raw in _unzip(export.export_zip(head)).items():
        (tmp_path / name).write_bytes(raw)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(export.snippet(head).split("import torch")[0], "snippet", "exec"), namespace)  # no model download
    features = np.random.default_rng(0).normal(size=(20, head.weight.shape[1])).astype(np.float32)
    assert namespace["predict"](features) == [head.labels[i] for i in head.predict_proba(features).argmax(axis=1)]


@pytest.mark.parametrize("uploads, message", [
    (_files(np.zeros((3, 32)), np.zeros(3)), "3 row"),  # three rows for two labels
    (_files(np.zeros((2, 32)), np.zeros(3)), "weight must be"),  # bias does not match
    (_files(np.zeros(32), np.zeros(1)), "weight must be"),  # 1-D weight
    (_files(np.zeros((1, 32)), np.zeros(1), labels=("a", "b", "c")), "1 row"),  # binary weights, three labels
    (_files(np.zeros((2, 32)), np.zeros(2), labels=("a", "a")), "distinct"),
    (_files(np.zeros((2, 32)), np.zeros(2), labels=("a",)), "2 to"),
    (_files(np.zeros((2, 32)), np.zeros(2), encoder="gpt-17"), "Unknown encoder"),
    (_files(np.zeros((2, 32)), np.zeros(2), extra=np.zeros(2, np.float32)), "exactly 'weight' and 'bias'"),
    (_files(np.full((2, 32), np.nan), np.zeros(2)), "finite"),
    ([("head.safetensors", save({"weight": np.zeros((2, 32), np.int32), "bias": np.zeros(2, np.int32)})),
      ("head.json", b'{"labels": ["a", "b"], "encoder": "minilm-l6"}')], "floating"),
    ([("head.safetensors", save({"weight": np.zeros((2, 4), np.float32), "bias": np.zeros(2, np.float32)})),
      ("head.json", b"labels: a, b")], "not valid JSON"),
    ([("head.safetensors", save({"weight": np.zeros((2, 4), np.float32), "bias": np.zeros(2, np.float32)})),
      ("head.json", b'["a", "b"]')], "JSON object"),
    ([("head.safetensors", b"\x80\x04not safetensors at all"), ("head.json", b'{"labels": ["a", "b"], "encoder": "minilm-l6"}')],
     "not a readable safetensors"),
    ([("head.json", b'{"labels": ["a", "b"], "encoder": "minilm-l6"}')], "Missing head.safetensors"),
    ([("model.pkl", b"\x80\x04K\x01.")], "upload the exported .zip"),
    ([("head.zip", b"PK\x03\x04 truncated")], "not a readable zip"),
])
def test_tampered_files_give_input_errors(uploads, message):
    with pytest.raises(InputError, match=message):
        export.load_head(uploads)


def test_zip_with_two_heads_is_refused(head):
    files = _unzip(export.export_zip(head))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for folder in ("a", "b"):
            archive.writestr(f"{folder}/head.json", files["head.json"])
            archive.writestr(f"{folder}/head.safetensors", files["head.safetensors"])
    with pytest.raises(InputError, match="more than one"):
        export.load_head([("two.zip", buffer.getvalue())])


def test_head_of_another_width_is_refused_at_prediction(fresh_cache):
    registry.install("minilm-l6", tiny.bert_encoder())  # 32 features
    other = export.load_head(_files(np.zeros((2, 384)), np.zeros(2)))
    with pytest.raises(InputError, match="expects 384 features"):
        export.predict(other, TEXTS)
    with pytest.raises(InputError, match="nothing to classify"):
        export.predict(other, [])


def test_the_snippet_classifies_a_few_of_the_users_own_texts(head):
    items = ["The invoice is overdue.", "Our  team\nwon the final!", "Rain tomorrow.", "Pay by Friday.", "x" * 300]
    labels = ["billing", "sport", "weather", "billing", "sport"]
    texts = export.snippet_texts(items, labels)
    assert texts == ["The invoice is overdue.", "Our team won the final!", "Rain tomorrow."]  # one of each class
    code = export.snippet(head, texts)
    assert 'texts = ["The invoice is overdue.", "Our team won the final!", "Rain tomorrow."]' in code
    assert "I love it." not in code and "I love it." in export.snippet(head)
    assert export.snippet_texts(["y" * 300], ["a"]) == ["y" * export.SNIPPET_TEXT_CHARS]
