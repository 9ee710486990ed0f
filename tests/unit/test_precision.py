"""bf16 per model and machine (core/precision.py): the decision on recorded CPUs of every class, the probe on tiny
models built from configs (its timings from a fake timer, never the wall clock), the cache, the override, and what
loaders and results do with the decision. This machine's own CPU decides nothing here: each test names its CPU."""
from pathlib import Path

import pytest
import torch

from core import cpu, device, precision
from core import precision_probes as probes
from core.config import get_settings
from tests.support import tiny, tiny_speech, tiny_vision

RECORDED = Path(__file__).resolve().parents[1] / "data" / "cpuinfo"
AVX2, AVX512, AVX512_BF16, AMX = (cpu.parse_cpuinfo((RECORDED / name).read_text()) for name in (
    "epyc_avx2.txt", "epyc_avx512.txt", "epyc_avx512_bf16.txt", "xeon_amx.txt"))


@pytest.fixture(autouse=True)
def private_data(tmp_path, monkeypatch):
    """A private data folder (the decisions' cache), UBT_BF16 unset and the CPU as the device (a machine with a GPU
    would keep its float16 device choice and decide nothing), for every test."""
    monkeypatch.setattr(device, "_choice", device.DeviceChoice("cpu", "float32", torch.get_num_threads()))
    monkeypatch.setenv("UBT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("UBT_BF16", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def override(monkeypatch, value: str) -> None:
    monkeypatch.setenv("UBT_BF16", value)
    get_settings.cache_clear()


def timer(fp32_s: float, bf16_s: float):
    """A fake timer: runs the probe and says it took ``fp32_s`` or ``bf16_s``."""
    def time_it(run, number_format):
        run()
        return bf16_s if number_format == precision.BF16 else fp32_s
    return time_it


def never_built():
    raise AssertionError("the probe must not even be built on this CPU")


@pytest.mark.parametrize("recorded", [AVX2, AVX512], ids=["AVX2 only", "AVX-512"])
def test_a_cpu_without_bf16_instructions_keeps_float32_and_never_builds_the_probe(recorded, private_data):
    encoder = tiny.bert_encoder()
    decision = precision.decide("tiny", encoder.model, never_built, cpu=recorded)
    assert decision.format == precision.FP32 and decision.speedup is None
    assert "no AVX512_BF16 or AMX" in decision.why
    assert not (private_data / "precision").exists()  # nothing probed, nothing cached
    assert next(encoder.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("recorded", [AVX512_BF16, AMX], ids=["AVX-512 with BF16", "AMX"])
def test_a_bf16_cpu_keeps_bf16_where_the_probe_agrees_and_is_fast_enough(recorded):
    encoder = tiny.bert_encoder()
    probe = probes.text_encoder_probe(encoder.tokenizer, encoder.max_length)
    decision = precision.decide("tiny", encoder.model, probe, cpu=recorded, timer=timer(1.0, 0.5))
    assert decision.format == precision.BF16
    assert decision.speedup == pytest.approx(2.0)
    assert decision.agreement >= precision.TOLERANCES["text-encoder"].limit  # a real cosine between the two
    assert next(encoder.model.parameters()).dtype == torch.float32  # decide() casts nothing


def test_bf16_that_is_not_fast_enough_stays_float32():
    encoder = tiny.bert_encoder()
    probe = probes.text_encoder_probe(encoder.tokenizer, encoder.max_length)
    decision = precision.decide("tiny", encoder.model, probe, cpu=AMX, timer=timer(1.0, 1.0 / 1.2))
    assert decision.format == precision.FP32 and "only 1.20x" in decision.why


def test_bf16_that_disagrees_stays_float32_whatever_its_speed():
    encoder = tiny.bert_encoder()
    probe = precision.Probe("text-encoder", run=lambda m: None, agreement=lambda a, b: 0.98)
    decision = precision.decide("tiny", encoder.model, probe, cpu=AMX, timer=timer(1.0, 0.1))
    assert decision.format == precision.FP32 and "disagrees" in decision.why and decision.agreement == 0.98


@pytest.mark.parametrize("run_s, timed_runs", [(0.02, 25), (1.0, precision.PROBE_REPEATS)], ids=["20 ms", "1 s"])
def test_a_short_probe_is_timed_longer_than_its_repeats(run_s, timed_runs):
    """A 20 ms probe timed 3 times is decided by noise (0.46x to 1.51x on one AMX Xeon): it repeats until
    MIN_TIMED_S of each format is timed; a long probe keeps its repeats."""
    calls = []

    def time_it(run, number_format):
        calls.append(number_format)
        return run_s if number_format == precision.FP32 else run_s / 2

    record = precision.measure(torch.nn.Linear(2, 2), precision.Probe("text-encoder", run=lambda m: None,
                                                                      agreement=lambda a, b: 1.0), time_it)
    assert calls.count(precision.FP32) == calls.count(precision.BF16) == timed_runs
    assert calls[:2] == [precision.FP32, precision.BF16]  # the formats take turns
    assert record["speedup"] == pytest.approx(2.0) and record["format"] == precision.BF16


def test_the_decision_is_cached_per_model_and_machine_and_the_probe_runs_once(private_data):
    encoder = tiny.bert_encoder()
    built = []

    def make():
        built.append(1)
        return probes.text_encoder_probe(encoder.tokenizer, encoder.max_length)

    first = precision.decide("tiny", encoder.model, make, cpu=AMX, timer=timer(1.0, 0.5))
    again = precision.decide("tiny", encoder.model, make, cpu=AMX, timer=timer(1.0, 5.0))
    assert first == again and len(built) == 1
    other_machine = precision.decide("tiny", encoder.model, make, cpu=AVX512_BF16, timer=timer(1.0, 5.0))
    assert other_machine.format == precision.FP32 and len(built) == 2  # another CPU: probed again
    assert len([p for p in (private_data / "precision").iterdir() if p.is_dir()]) == 2


def test_a_probe_that_fails_keeps_float32_with_the_reason():
    def broken(model):
        raise RuntimeError("no bf16 kernel for this op")

    probe = precision.Probe("clip", run=broken, agreement=lambda a, b: 1.0)
    decision = precision.decide("tiny", tiny.bert_encoder().model, probe, cpu=AMX)
    assert decision.format == precision.FP32 and "no bf16 kernel" in decision.why


@pytest.mark.parametrize(("value", "expected"), [("1", precision.BF16), ("0", precision.FP32)])
def test_ubt_bf16_overrides_the_cpu_and_the_probe(monkeypatch, value, expected):
    override(monkeypatch, value)
    for recorded in (AVX2, AMX):
        decision = precision.decide("tiny", tiny.bert_encoder().model, never_built, cpu=recorded)
        assert (decision.format, decision.why) == (expected, f"UBT_BF16={value}")


def test_the_device_line_says_why_bf16_is_not_tried_on_an_avx2_cpu(monkeypatch):
    assert precision.device_note(AVX2).startswith("bf16 not tried: this CPU has no AVX512_BF16 or AMX")
    assert "this CPU has AMX and AVX512_BF16" in precision.device_note(AMX)
    assert "AVX512_BF16" in precision.device_note(AVX512_BF16)
    override(monkeypatch, "0")
    assert precision.device_note(AMX) == "bf16 off (UBT_BF16=0)"


def test_on_this_cpu_nothing_changes_unless_it_has_bf16(fresh_cache):
    """The packaged MiniLM loads as before here: float32 weights, a float32 card, unless this CPU has bf16."""
    from core import registry

    loaded = registry.load("minilm-l6")
    native, _ = precision.native_bf16(cpu.this_cpu())
    if native:
        pytest.skip(f"this CPU has bf16 ({cpu.this_cpu().describe()}): the probe decides here")
    assert loaded.model.precision.format == precision.FP32 and not loaded.model.precision.speedup
    assert next(loaded.model.model.parameters()).dtype == torch.float32
    measurement = loaded.measurement(0.1, 100.0)
    assert measurement.number_format == "fp32" and "float32" in measurement.device


def test_the_override_casts_a_loaded_model_and_its_results_say_bf16(monkeypatch, fresh_cache):
    """UBT_BF16=1 on the packaged MiniLM: bf16 weights, embeddings close to float32's, a card that says bf16."""
    import numpy as np

    from core import registry, text

    texts = list(probes.shipped_texts()[:8])
    reference = text.embed(registry.load("minilm-l6"), texts)
    fresh_cache.clear()
    override(monkeypatch, "1")
    loaded = registry.load("minilm-l6")
    assert next(loaded.model.model.parameters()).dtype == torch.bfloat16
    embeddings = text.embed(loaded, texts)
    assert embeddings.dtype == np.float32 and probes.lowest_cosine(embeddings, reference) > 0.99
    measurement = loaded.measurement(0.1, 100.0)
    assert measurement.number_format == "bf16" and "bfloat16" in measurement.device


def test_loaders_apply_the_decision_through_one_function(monkeypatch):
    """apply() casts in place when bf16 wins, with the family's own cast (openai-whisper's keeps LayerNorm float32)."""
    override(monkeypatch, "1")
    whisper = tiny_speech.whisper_model().model
    decision = precision.apply("tiny-whisper", whisper, lambda: probes.whisper_probe(seconds=2.0))
    assert decision.bf16
    assert whisper.encoder.conv1.weight.dtype == torch.bfloat16
    assert whisper.encoder.ln_post.weight.dtype == torch.float32
    transcript = probes.whisper_probe(seconds=2.0).run(whisper)  # runs through whisper.transcribe(fp16=False)
    assert isinstance(transcript, str)


@pytest.mark.parametrize("family", ["clip", "captioner"])
def test_the_image_text_probes_compare_both_formats_on_tiny_models(family):
    if family == "clip":
        clip = tiny_vision.clip_model()
        module, probe = clip.model, probes.clip_probe(clip.preprocess, clip.tokenizer)
    else:
        captioner = tiny_vision.blip_captioner()
        module, probe = captioner.model, probes.captioner_probe(captioner.processor, max_new_tokens=5)
    record = precision.measure(module, probe, timer(1.0, 0.5))
    assert record["speedup"] == pytest.approx(2.0)
    tolerance = precision.TOLERANCES[family]
    assert record["format"] == (precision.BF16 if tolerance.holds(record["agreement"]) else precision.FP32)
    assert next(module.parameters()).dtype == torch.float32  # the probe cast a copy


def test_the_classifier_probe_compares_labels_on_every_shipped_text():
    classifier = tiny.distilbert_classifier()
    probe = probes.classifier_probe(classifier.tokenizer, classifier.max_length)
    assert probe.agreement(classifier.model, classifier.model) == 1.0
    assert len(probe.run(classifier.model)) == probes.TIMED_TEXTS
    assert len(probes.shipped_texts()) > 200


def test_device_labels_name_their_number_format():
    assert precision.format_in_label("cpu · float32 · 2 thread(s)") == "fp32"
    assert precision.format_in_label("cpu · bfloat16 · 2 thread(s)") == "bf16"
    assert precision.format_in_label("cpu · int8 · 2 thread(s)") == "int8"
    assert precision.format_in_label("cpu · CTranslate2 int8 · 1 thread(s)") == "int8"
    assert precision.format_in_label("cpu · llama.cpp Q4_1 · 2 thread(s)") == "q4_1"
    assert precision.format_in_label("cuda · float16 · 8 thread(s)") == "fp16"
    assert precision.bf16_label("cpu · float32 · 2 thread(s)") == "cpu · bfloat16 · 2 thread(s)"


# --- training -----------------------------------------------------------------------------------------
def test_training_keeps_autocast_only_inside_the_float32_interval_and_fast_enough():
    def probe(fp32, bf16):
        return precision.TrainingProbe("tiny", lambda autocast: bf16 if autocast else fp32)

    kept = precision.measure_training(probe((2.0, 80, 100), (1.0, 78, 100)))
    assert kept["format"] == precision.BF16
    assert precision.measure_training(probe((2.0, 80, 100), (1.0, 60, 100)))["format"] == precision.FP32  # outside
    assert precision.measure_training(probe((2.0, 80, 100), (1.8, 80, 100)))["format"] == precision.FP32  # slow
    low, high = precision.wilson_interval(80, 100)
    assert low < 0.8 < high and 0.7 < low and high < 0.9


def test_training_on_an_avx2_cpu_never_runs_the_training_probe():
    def epoch(autocast):
        raise AssertionError("no training probe on this CPU")

    decision = precision.decide_training(precision.TrainingProbe("tiny", epoch), cpu=AVX2)
    assert decision.format == precision.FP32 and "no AVX512_BF16 or AMX" in decision.why


def test_the_from_scratch_arm_says_its_number_format_and_trains_under_autocast_when_forced(monkeypatch):
    from core.finetune.arms import ScratchSettings
    from core.finetune.arms.from_scratch import scratch_images
    from core.finetune.data.examples import example_digits

    data = example_digits(per_class=10)
    idx = list(range(len(data.items)))
    train_idx, test_idx = idx[::2], idx[1::2]
    settings = ScratchSettings(epochs=1, time_budget_s=60.0, patience=None)
    monkeypatch.setattr(precision, "this_cpu", lambda: AVX2)  # an AMX CPU would probe, and may keep autocast
    plain = scratch_images(data, train_idx, test_idx, settings)
    assert plain.params["number_format"] == "fp32" and "float32" in plain.device
    assert not any("Number format" in note for note in plain.notes)  # nothing changes where bf16 is not tried
    override(monkeypatch, "1")
    forced = scratch_images(data, train_idx, test_idx, settings)
    assert forced.params["number_format"] == "bf16" and "bf16 autocast" in forced.device
    assert any(note.startswith("Number format: UBT_BF16=1") for note in forced.notes)
    assert 0.0 <= forced.accuracy <= 1.0


# --- the task functions, unchanged, on models a decision cast -------------------------------------------
def test_a_whisper_model_cast_to_bf16_transcribes_and_its_card_says_bf16(monkeypatch, fresh_cache):
    from core import audio, registry, speech

    override(monkeypatch, "1")
    runner = tiny_speech.whisper_model()
    runner.precision = precision.apply("whisper-tiny", runner.model, lambda: probes.whisper_probe(seconds=2.0))
    registry.install("whisper-tiny", runner)
    data, _ = speech.sample_clip()
    clip = audio.decode(data, "sample.flac")
    result = speech.transcribe(registry.load("whisper-tiny"), clip, speech.TranscribeOptions(beam_size=1, fallback=False))
    assert result.language  # detected through the bf16 decoder
    assert result.measurement.number_format == "bf16" and "bfloat16" in result.measurement.device


def test_a_diffusion_pipeline_cast_to_bf16_generates_a_seeded_image(monkeypatch, fresh_cache, tmp_path):
    import numpy as np

    from core import imagegen, registry
    from tests.support import tiny_generation

    override(monkeypatch, "1")
    model = tiny_generation.text_to_image(tmp_path, default_steps=2, default_guidance=0.0)
    model.precision = precision.apply("sdxs-512", model.pipe, lambda: probes.diffusion_probe(size=32))
    assert model.pipe.unet.dtype == torch.bfloat16 and model.pipe.vae.dtype == torch.bfloat16
    registry.install("sdxs-512", model)
    request = imagegen.ImageRequest(prompt="a red fox in the snow", steps=2, width=256, height=256, seed=3)
    result = imagegen.generate_image(registry.load("sdxs-512"), request)
    again = imagegen.generate_image(registry.load("sdxs-512"), request)
    assert np.asarray(result.image).shape == (256, 256, 3)
    assert np.array_equal(np.asarray(result.image), np.asarray(again.image))  # seeded: the same image again
    assert result.measurement.number_format == "bf16"


def test_the_fine_tune_arm_probes_autocast_on_a_bf16_cpu_and_says_which_format_it_used(monkeypatch, fresh_cache,
                                                                                        private_data):
    """With an AMX CPU injected, the arm's training probe runs (either verdict is accepted: it rests on this
    machine's timings), is cached, and the result names the format; the shared encoder stays untouched."""
    from core import registry
    from core.finetune import arms, data
    from core.finetune import features as feats

    registry.install("minilm-l6", tiny.bert_encoder())
    feats.FEATURES.clear()
    monkeypatch.setattr(precision, "this_cpu", lambda: AMX)
    labelled = data.example_sentiment()
    train, test = data.split(labelled)
    shared = registry.load("minilm-l6").model.model
    before = [p.detach().clone() for p in shared.parameters()]
    result = arms.run_fine_tune(labelled, train, test, arms.FineTuneSettings(top_layers=1, epochs=1, batch_size=32))
    assert result.params["number_format"] in (precision.FP32, precision.BF16)
    assert any(note.startswith("Number format: ") for note in result.notes)
    assert ("bf16 autocast" in result.device) is (result.params["number_format"] == precision.BF16)
    assert len([p for p in (private_data / "precision").iterdir() if p.is_dir()]) == 1  # the verdict, cached
    assert all(torch.equal(p, b) for p, b in zip(shared.parameters(), before))
    feats.FEATURES.clear()


def test_the_sidebar_device_line_says_why_bf16_is_not_tried_here():
    from tests.support.apptest import app_at

    at = app_at("app_pages/home.py").run()
    device = next(c.value for c in at.sidebar.caption if c.value.startswith("**Device:**"))
    assert precision.device_note() in device


def test_the_bench_says_not_measured_on_a_cpu_without_bf16_instructions(tmp_path):
    """bench/bf16.py --quick: one row per family; on this CPU (without the instructions) each says why not."""
    import json
    import os
    import subprocess
    import sys

    if precision.native_bf16(cpu.this_cpu())[0]:
        pytest.skip(f"this CPU has bf16 ({cpu.this_cpu().describe()}): the bench measures here")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "UBT_DATA_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "bench.bf16", "--quick"], cwd=root, env=env, check=True, capture_output=True)
    rows = json.loads((root / "bench" / "out" / "bf16.json").read_text())
    from bench.bf16 import FAMILIES

    assert len(rows) == len(FAMILIES)
    assert {row["status"] for row in rows} == {"not measured: no bf16 instructions here"}
    assert all("no AVX512_BF16 or AMX" in row["note"] for row in rows)
