"""core.vision and core.charts.vision on tiny open_clip and BLIP models built from configs."""
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from core import registry, vision
from core.catalog import OPEN_CLIP_WEIGHTS, ModelSpec, get_spec, specs
from core.charts.vision import label_probabilities_chart, probability_heatmap
from core.config import get_settings
from core.errors import InputError, ModelUnavailable
from core.registry import ModelCache, Resolution
from tests.support import tiny_vision

COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255)]


@pytest.fixture(scope="module")
def tiny_clip():
    return tiny_vision.clip_model()


@pytest.fixture(scope="module")
def tiny_blip():
    return tiny_vision.blip_captioner()


@pytest.fixture
def installed(fresh_cache, tiny_clip, tiny_blip):
    registry.install(vision.CLIP_KEY, tiny_clip)
    registry.install(vision.CAPTION_KEY, tiny_blip)


@pytest.fixture
def pictures():
    return [Image.new("RGB", (48 + 8 * i, 40), colour) for i, colour in enumerate(COLOURS)]


# --- labels and prompts ---------------------------------------------------------------------------
def test_labels_are_split_cleaned_and_deduplicated():
    assert vision.parse_labels(" cat, dog\n\n  red   car ,Cat,, ") == ["cat", "dog", "red car"]
    assert vision.parse_labels(["a", "b", "A"]) == ["a", "b"]


@pytest.mark.parametrize("raw, message", [
    ("", "at least two"),
    ("cat, cat", "at least two"),
    (",".join(f"l{i}" for i in range(vision.MAX_LABELS + 1)), f"at most {vision.MAX_LABELS}"),
    ("cat, " + "x" * 200, "short names"),
])
def test_bad_labels_get_a_message(raw, message):
    with pytest.raises(InputError, match=message):
        vision.parse_labels(raw)


def test_prompts_fill_the_template_and_refuse_one_without_a_slot():
    assert vision.make_prompts(["cat", "dog"], "a photo of a {}, {}") == ["a photo of a cat, cat", "a photo of a dog, dog"]
    with pytest.raises(InputError, match=r"needs \{\}"):
        vision.make_prompts(["cat", "dog"], "a photo of a cat")


# --- CLIP -----------------------------------------------------------------------------------------
def test_features_are_normalised_with_the_embedding_size(installed, pictures):
    loaded = registry.load(vision.CLIP_KEY)
    features = vision.image_features(loaded, pictures, batch_size=2)
    assert features.shape == (3, tiny_vision.CLIP_EMBED_DIM) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert loaded.spec.key == vision.CLIP_KEY and loaded.resolution.source == "test"
    text = vision.text_features(loaded, ["a photo of a cat.", "a photo of a dog."])
    assert text.shape == (2, tiny_vision.CLIP_EMBED_DIM)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_features(installed, pictures):
    clip = registry.load(vision.CLIP_KEY)
    together = vision.image_features(clip, pictures, batch_size=16)
    apart = np.concatenate([vision.image_features(clip, [p]) for p in pictures])
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_zero_shot_gives_a_distribution_per_image_and_its_measurement(installed, pictures):
    seen = []
    result = vision.zero_shot(registry.load(vision.CLIP_KEY), pictures, ["red", "green", "blue", "red"], "a {} square", batch_size=2,
                              on_progress=lambda p: seen.append((p.done, p.total)))
    assert result.labels == ["red", "green", "blue"]
    assert result.prompts == ["a red square", "a green square", "a blue square"]
    assert result.probabilities.shape == (3, 3)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-9)
    assert (result.probabilities > 0).all()
    for (label, probability), row in zip(result.top, result.probabilities):
        assert label == result.labels[int(row.argmax())] and probability == pytest.approx(row.max())
    assert seen == [(2, 3), (3, 3)]
    m = result.measurement
    assert (m.model, m.source, m.load_s) == (vision.CLIP_KEY, "test", None)
    assert set(m.extra) == {"images_per_s", "preprocess_s"} and m.extra["images_per_s"] > 0
    assert 0 < m.extra["preprocess_s"] < m.latency_s


def test_zero_shot_matches_clip_scores_computed_by_hand(installed, tiny_clip, pictures):
    result = vision.zero_shot(registry.load(vision.CLIP_KEY), pictures[0], ["cat", "dog"])
    clip = registry.load(vision.CLIP_KEY)
    images = vision.image_features(clip, [pictures[0]])
    texts = vision.text_features(clip, vision.make_prompts(["cat", "dog"], vision.DEFAULT_TEMPLATE))
    logits = float(tiny_clip.model.logit_scale.detach().exp()) * images @ texts.T
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)


def test_zero_shot_refuses_no_image(installed):
    with pytest.raises(InputError, match="no image"):
        vision.zero_shot(registry.load(vision.CLIP_KEY), [], ["cat", "dog"])


def _tiny_clip_spec(hub_id: str) -> ModelSpec:
    return ModelSpec(key="tiny", family="image-text", task="zero-shot", title="tiny", loader="core.vision:load_clip",
                     hub_id=hub_id, options={"arch": tiny_vision.register_tiny_clip_config(), "pretrained": "none"})


def _write_checkpoint(clip, folder):
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, folder / OPEN_CLIP_WEIGHTS[0])


def _same_weights(a, b) -> bool:
    return all(np.array_equal(a.state_dict()[name].numpy(), tensor.numpy()) for name, tensor in b.state_dict().items())


def test_clip_loader_reads_a_local_folder(tmp_path, monkeypatch, tiny_clip):

    _write_checkpoint(tiny_clip, tmp_path / "laion" / "tiny")
    monkeypatch.setattr(registry.sources, "get_settings", lambda: replace(get_settings(), model_dir=tmp_path))
    spec = _tiny_clip_spec("laion/tiny")
    resolution = registry.resolve(spec)
    assert resolution.source == "local"
    assert _same_weights(vision.load_clip(spec, resolution).model, tiny_clip.model)
    with pytest.raises(ModelUnavailable, match="no open_clip weights"):
        vision.load_clip(spec, Resolution("local", str(tmp_path), "local folder"))


def test_clip_loader_reads_the_hugging_face_cache(tmp_path, monkeypatch, tiny_clip):
    from huggingface_hub import constants

    repo = tmp_path / "models--laion--tiny"
    _write_checkpoint(tiny_clip, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    spec = _tiny_clip_spec("laion/tiny")
    resolution = registry.resolve(spec)
    assert resolution.source == "hub-cache"
    assert _same_weights(vision.load_clip(spec, resolution).model, tiny_clip.model)


# --- BLIP -----------------------------------------------------------------------------------------
def test_caption_one_image_greedy(installed, pictures):
    result = vision.caption(registry.load(vision.CAPTION_KEY), pictures[0], max_new_tokens=4)
    assert len(result.captions) == 1 and result.text == result.captions[0] and result.text
    m = result.measurement
    assert (m.model, m.source) == (vision.CAPTION_KEY, "test")
    assert set(m.extra) == {"images_per_s", "preprocess_s", "tokens_per_s"}
    assert m.extra["tokens_per_s"] > 0 and 0 < m.extra["preprocess_s"] < m.latency_s


def test_caption_batch_with_prefix_and_beams(installed, pictures):
    seen = []
    result = vision.caption(registry.load(vision.CAPTION_KEY), pictures, prefix="  a   picture of ", beams=2, max_new_tokens=3,
                            batch_size=2, on_progress=lambda p: seen.append((p.done, p.total)))
    assert result.prefix == "a picture of"
    assert len(result.captions) == 3 and all(c.startswith("a picture of") for c in result.captions)
    assert seen == [(2, 3), (3, 3)]
    assert result.measurement.extra["images_per_s"] > 0


def test_caption_in_a_batch_equals_caption_alone(installed, pictures):
    together = vision.caption(registry.load(vision.CAPTION_KEY), pictures, max_new_tokens=3, batch_size=3).captions
    assert together == [vision.caption(registry.load(vision.CAPTION_KEY), p, max_new_tokens=3).text for p in pictures]


@pytest.mark.parametrize("kwargs, message", [
    ({"beams": 0}, "Beams"), ({"beams": vision.MAX_BEAMS + 1}, "Beams"),
    ({"max_new_tokens": 0}, "New tokens"), ({"max_new_tokens": vision.MAX_NEW_TOKENS + 1}, "New tokens"),
])
def test_caption_settings_out_of_range_are_refused(installed, pictures, kwargs, message):
    with pytest.raises(InputError, match=message):
        vision.caption(registry.load(vision.CAPTION_KEY), pictures[0], **kwargs)


def test_long_prefix_is_cut_to_what_fits_with_a_note(installed, tiny_blip, pictures):
    positions = tiny_blip.model.config.text_config.max_position_embeddings
    result = vision.caption(registry.load(vision.CAPTION_KEY), pictures[0], prefix="a " * 200, max_new_tokens=4)
    assert "cut to its first" in result.notes[0]
    assert f"only its first {positions - 5} fit" in result.notes[1]
    assert result.prefix == " ".join(["a"] * (positions - 5)) and result.text.startswith(result.prefix)


# --- catalog, availability, memory ----------------------------------------------------------------
def test_catalog_has_the_defaults_with_open_clip_tags_that_exist():
    import open_clip

    tags = set(open_clip.list_pretrained())
    clips = specs(family="image-text", task="zero-shot")
    assert clips[0].key == vision.CLIP_KEY and len(clips) >= 3
    for spec in clips:
        assert (spec.options["arch"], spec.options["pretrained"]) in tags
        assert open_clip.get_pretrained_cfg(spec.options["arch"], spec.options["pretrained"])["hf_hub"].rstrip("/") == spec.hub_id
    assert get_spec(vision.CAPTION_KEY).hub_id == "Salesforce/blip-image-captioning-base"


def test_default_models_fit_the_memory_budget_together_and_are_evicted_when_not():
    clip, blip = get_spec(vision.CLIP_KEY), get_spec(vision.CAPTION_KEY)
    assert clip.ram_mb + blip.ram_mb <= get_settings().memory_budget_mb
    cache = ModelCache(budget_mb=clip.ram_mb + blip.ram_mb - 1)
    resolution = Resolution("test", "in memory")
    cache.get(clip.key, clip, resolution, lambda: None)  # charged at its ram_mb estimate
    cache.get(blip.key, blip, resolution, lambda: None)
    assert cache.evictions == [clip.key] and [m.spec.key for m in cache.snapshot()] == [blip.key]


def test_offline_without_weights_the_models_are_reported_unavailable(fresh_cache):
    missing = vision.unavailable()
    assert set(missing) == {spec.key for spec in specs(family="image-text")}
    assert "not available" in missing[vision.CLIP_KEY] and "UBT_MODEL_DIR" in missing[vision.CLIP_KEY]
    with pytest.raises(ModelUnavailable):
        vision.zero_shot(registry.load(vision.CLIP_KEY), [Image.new("RGB", (8, 8))], ["cat", "dog"])


def test_installed_models_count_as_available(installed):
    assert vision.unavailable((vision.CLIP_KEY, vision.CAPTION_KEY)) == {}


# --- charts ---------------------------------------------------------------------------------------
def test_label_chart_sorts_bars_and_highlights_the_best():
    spec = label_probabilities_chart(["cat", "dog", "car"], np.array([0.2, 0.7, 0.1]), title="cat.jpg").to_dict()
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["y"]["sort"] == "-x" and spec["encoding"]["x"]["scale"]["domain"] == [0, 1]
    rows = next(iter(spec["datasets"].values()))
    assert [r["best"] for r in rows] == [False, True, False]
    with pytest.raises(ValueError):
        label_probabilities_chart(["cat"], np.array([0.5, 0.5]))


def test_heatmap_has_one_cell_per_image_and_label():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    spec = probability_heatmap(["a.jpg", "b.jpg", "a.jpg"], ["cat", "dog"], probs).to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert len(rows) == 6 and len({r["image"] for r in rows}) == 3
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "text"]
