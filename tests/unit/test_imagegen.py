"""core.imagegen on a tiny StableDiffusionPipeline built from configs, and on the bundled digits model."""
import io

import numpy as np
import pytest
from PIL import Image

from core import imagegen, registry
from core.catalog import ASSETS, get_spec
from core.errors import InputError, ModelTooLarge, ModelUnavailable
from tests.support import tiny_generation as tiny

SIZE = 256


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny.text_to_image(tmp_path_factory.mktemp("tiny-sd"), default_steps=2, default_guidance=0.0)


@pytest.fixture
def installed(fresh_cache, tiny_model):
    registry.install("sdxs-512", tiny_model)
    return "sdxs-512"


def request(**changes) -> imagegen.ImageRequest:
    base = dict(prompt="a red fox in the snow", steps=2, width=SIZE, height=SIZE, seed=3)
    return imagegen.ImageRequest(**{**base, **changes})


# --- requests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["", "   \n", None])
def test_empty_prompt_is_refused_with_a_message(prompt):
    with pytest.raises(InputError, match="no prompt"):
        imagegen.validate_request(request(prompt=prompt))


@pytest.mark.parametrize("side", [300, 260])
def test_size_not_a_multiple_of_8_is_refused_with_the_nearest_sizes(side):
    with pytest.raises(InputError, match="not a multiple of 8") as err:
        imagegen.validate_request(request(width=side))
    low = side - side % 8
    assert f"Use {low} or {low + 8}" in str(err.value)


@pytest.mark.parametrize("side", [128, 768])
def test_size_out_of_range_is_refused(side):
    with pytest.raises(InputError, match="between 256 and 512"):
        imagegen.validate_request(request(height=side))


@pytest.mark.parametrize(("asked", "used"), [(0, 1), (-5, 1), (500, imagegen.MAX_STEPS)])
def test_steps_are_bounded_with_a_note(asked, used):
    cleaned, notes = imagegen.validate_request(request(steps=asked))
    assert cleaned.steps == used
    assert f"using {used}" in notes[0]


def test_a_10000_character_prompt_is_cut_to_the_tokenizers_maximum(tiny_model):
    tokenizer = tiny_model.pipe.tokenizer
    long = ("a red fox in the snow " * 500)[:10_000]
    cut, notes = imagegen.truncate_to_tokens(tokenizer, long, "prompt")
    assert long.startswith(cut) and len(cut) < 500
    assert len(tokenizer(cut)["input_ids"]) == tokenizer.model_max_length
    assert "10,000 characters" in notes[0] and "at most 75" in notes[0]
    assert imagegen.truncate_to_tokens(tokenizer, "a red fox", "prompt") == ("a red fox", [])


# --- text-to-image on the tiny pipeline ---------------------------------------------------------------
def test_two_steps_give_an_image_of_the_requested_size_with_measurements(installed):
    updates = []
    result = imagegen.generate_image(registry.load(installed), request(width=SIZE, height=SIZE + 64), on_progress=updates.append)
    assert result.image.size == (SIZE, SIZE + 64) and result.image.mode == "RGB"
    assert (result.steps_done, result.cancelled) == (2, False)
    assert [u.done for u in updates] == [1, 2] and all(u.total == 2 for u in updates)
    scale = installed_scale(installed)
    assert updates[-1].preview.size == (SIZE // scale, (SIZE + 64) // scale)
    m = result.measurement
    assert (m.model, m.source) == ("sdxs-512", "test")
    assert m.extra["step_s"] > 0 and m.extra["decode_s"] > 0 and m.extra["image_s"] >= m.extra["step_s"] * 2
    assert m.peak_mb > 0


def installed_scale(key):
    return registry.load(key).model.pipe.vae_scale_factor


def test_the_same_seed_gives_the_same_image_and_another_seed_does_not(installed):
    first = np.asarray(imagegen.generate_image(registry.load(installed), request(seed=7)).image)
    again = np.asarray(imagegen.generate_image(registry.load(installed), request(seed=7)).image)
    other = np.asarray(imagegen.generate_image(registry.load(installed), request(seed=8)).image)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 1


def test_ours_matches_a_plain_diffusers_call_of_the_same_components(installed):
    import torch

    ours = np.asarray(imagegen.generate_image(registry.load(installed), request(seed=5)).image).astype(int)
    pipe = registry.load(installed).model.pipe
    plain = pipe("a red fox in the snow", num_inference_steps=2, guidance_scale=0.0, width=SIZE, height=SIZE,
                 generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert np.abs(ours - np.asarray(plain).astype(int)).max() <= 1


def test_cancel_stops_after_the_current_step(fresh_cache, tiny_model):
    registry.install("tiny-sd", tiny_model)
    seen = []
    result = imagegen.generate_image(
        registry.load("tiny-sd"), request(steps=6), on_progress=lambda u: seen.append(u.done), should_stop=lambda: len(seen) >= 2,
    )
    assert result.cancelled and result.steps_done == 2 and seen == [1, 2]
    assert result.image is None and result.preview is not None


def test_guidance_uses_the_negative_prompt_and_a_guidance_free_model_ignores_it(fresh_cache, tmp_path, tiny_model):
    registry.install("tiny-sd", tiny.text_to_image(tmp_path, default_steps=2, default_guidance=7.5))
    guided = imagegen.generate_image(registry.load("tiny-sd"), request(guidance_scale=7.5, negative_prompt="blue sky"))
    assert guided.request.guidance_scale == 7.5 and guided.parameters["negative_prompt"] == "blue sky"
    registry.install("sdxs-512", tiny_model)
    free = imagegen.generate_image(registry.load("sdxs-512"), request(guidance_scale=7.5, negative_prompt="blue sky"))
    assert free.request.guidance_scale == 0.0 and free.request.negative_prompt == ""
    assert any("ignores the negative prompt" in note for note in free.notes)


def test_tiny_decoder_option_decodes_with_autoencoder_tiny(installed):
    registry.install(imagegen.TINY_DECODER_KEY, tiny.tiny_decoder())
    result = imagegen.generate_image(registry.load(installed), request(tiny_decoder=True),
                                     decoder=registry.load(imagegen.TINY_DECODER_KEY))
    assert result.parameters["decoder"] == get_spec(imagegen.TINY_DECODER_KEY).title
    assert result.image.size == (SIZE, SIZE)


def test_png_download_carries_the_parameters(installed):
    result = imagegen.generate_image(registry.load(installed), request(seed=11))
    png = Image.open(io.BytesIO(result.png()))
    assert png.format == "PNG" and png.size == (SIZE, SIZE)
    assert png.text["prompt"] == "a red fox in the snow" and png.text["seed"] == "11" and png.text["steps"] == "2"
    assert '"width": 256' in png.text["parameters"]


def test_memory_plan_turns_on_vae_tiling_then_refuses_with_a_size_that_fits(tiny_model):
    vae = tiny_model.pipe.vae
    plain = imagegen.plan_memory(tiny_model, vae, 512, 512, False, weights_mb=0, budget_mb=10_000)
    assert not plain.vae_tiling and plain.working_mb > 0
    tiled_budget = plain.working_mb - 1
    tiled = imagegen.plan_memory(tiny_model, vae, 512, 512, False, weights_mb=0, budget_mb=tiled_budget)
    assert tiled.vae_tiling and tiled.working_mb < plain.working_mb and "tiles" in tiled.notes[0]
    with pytest.raises(ModelTooLarge, match="memory budget") as err:
        imagegen.plan_memory(tiny_model, vae, 512, 512, False, weights_mb=0, budget_mb=1e-3)
    assert "No size from 256 px fits" in str(err.value)


def test_tiled_decoding_gives_the_same_image_size_and_restores_the_shared_vae(installed, monkeypatch):
    vae = registry.load(installed).model.pipe.vae
    before = (vae.use_tiling, vae.tile_sample_min_size)
    plan = imagegen.MemoryPlan(1.0, True, ("decoding in tiles",))
    monkeypatch.setattr(imagegen.memory, "plan_memory", lambda *a, **k: plan)
    result = imagegen.generate_image(registry.load(installed), request(width=512, height=512, steps=1))
    assert result.image.size == (512, 512) and "decoding in tiles" in result.notes
    assert (vae.use_tiling, vae.tile_sample_min_size) == before


def test_hub_model_without_a_source_says_how_to_get_it(fresh_cache):
    with pytest.raises(ModelUnavailable, match="IDKiro/sdxs-512-0.9"):
        registry.load("sdxs-512")


# --- the bundled digits model ---------------------------------------------------------------------
def digits() -> registry.Loaded:
    return registry.load(imagegen.DIGITS_KEY)


needs_digits = pytest.mark.skipif(
    not (ASSETS / "digits_diffusion" / "unet").exists(),
    reason="assets/digits_diffusion is missing: run scripts/train_digits_diffusion.py",
)


@needs_digits
def test_digits_are_recognised_as_the_requested_class(fresh_cache):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    data = load_digits()
    classifier = LogisticRegression(max_iter=5000).fit(data.data, data.target)
    hits = 0
    for digit in range(10):
        result = imagegen.generate_digits(digits(), digit, count=2, steps=20, seed=digit)
        assert result.pixels.shape == (2, 16, 16) and result.pixels.min() >= 0 and result.pixels.max() <= 1
        hits += int((classifier.predict(imagegen.digits_to_8x8(result.pixels)) == digit).sum())
        assert result.readable == pytest.approx((classifier.predict(imagegen.digits_to_8x8(result.pixels)) == digit).mean())
    assert hits >= 14, f"only {hits} of 20 samples read as the requested digit"


@needs_digits
def test_digits_are_seeded_measured_and_cancellable(fresh_cache):
    first = imagegen.generate_digits(digits(), 3, count=4, steps=5, seed=1)
    again = imagegen.generate_digits(digits(), 3, count=4, steps=5, seed=1)
    np.testing.assert_array_equal(first.pixels, again.pixels)
    assert first.grid.size[0] > 4 * 16 and first.measurement.source == "bundled"
    assert first.measurement.extra["step_s"] > 0 and first.measurement.extra["image_s"] > 0
    assert Image.open(io.BytesIO(first.png())).text["digit"] == "3"
    stopped = imagegen.generate_digits(digits(), 3, count=2, steps=10, should_stop=lambda: True)
    assert stopped.cancelled and stopped.steps_done == 1 and stopped.grid is None and stopped.preview is not None


@needs_digits
def test_digits_training_record_has_the_cost_of_training_from_scratch():
    record = imagegen.digits_training_record()
    assert record["train_seconds"] > 0 and record["steps"] > 0 and record["hardware"]
    assert len(record["loss_curve"]) > 10 and record["loss_curve"][-1][1] < record["loss_curve"][0][1]
    assert (ASSETS / "digits_diffusion" / "loss_curve.png").exists()
    weights = sum(p.stat().st_size for p in (ASSETS / "digits_diffusion").rglob("*"))
    assert weights < 20 * 2**20 and not list((ASSETS / "digits_diffusion").rglob("*.bin"))


@pytest.mark.parametrize("digit", [-1, 10, 2.5])
def test_digit_outside_0_to_9_is_refused(digit):
    with pytest.raises(InputError, match="0 to 9"):
        imagegen.generate_digits(None, digit)  # refused before the model is used


@needs_digits
def test_digits_are_enlarged_nearest_neighbour_so_each_pixel_stays_a_sharp_square(fresh_cache):
    result = imagegen.generate_digits(digits(), 7, count=2, steps=5, seed=0)
    grid = np.asarray(result.grid)
    block = grid[:8, :8]  # one source pixel, enlarged 8 times: every screen pixel of it the same value
    assert (block == block.flat[0]).all()
    assert set(np.unique(grid)) <= set(np.unique(np.asarray(imagegen.digits_grid(
        np.asarray(result.pixels)[:, None] * 2 - 1, smooth=False))))
