"""bf16 against float32, one row per model family, with the tolerance each family is held to (core/precision.py).

Each row runs the family's own probe (core/precision_probes.py: the shipped photo, texts and clip) through
:func:`core.precision.measure`: the float32 model and its bf16 copy take turns, after one warm-up each, and the row
gives both medians, the speed-up and the agreement. Tolerances were fixed before measuring (``TOLERANCES``);
bf16 counts as met where the agreement holds and bf16 is >= ``MIN_SPEEDUP``x faster. The issue's target for the
CLIP and text-encoder rows is >= 1.5x.

Weights: the real ones where the registry finds them (the packaged MiniLM always); otherwise the same architecture
with seeded random weights, which measures speed truthfully and agreement only as a proxy (the note says which).
On a CPU without AVX512_BF16 or AMX every row says "not measured: no bf16 instructions here" (bf16 is emulated
there, 4-8x slower, and the app never tries it).

Usage: python -m bench.bf16 [--quick]
"""
from __future__ import annotations

import os
from dataclasses import replace

from bench.common import parse_args, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["UBT_BF16"] = "0"  # the loaders keep float32: this bench measures bf16 itself
TARGETS = {"clip": 1.5, "text-encoder": 1.5}  # the "done when" rows; others need MIN_SPEEDUP
FAMILIES = ("clip", "text-encoder", "classifier", "captioner", "whisper", "diffusion", "training")
TITLES = {"clip": "CLIP ViT-B/32, both towers", "text-encoder": "MiniLM-L6 sentence encoder (PyTorch)",
          "classifier": "DistilBERT SST-2 classifier", "captioner": "BLIP base captioning",
          "whisper": "openai-whisper tiny", "diffusion": "text-to-image UNet + VAE (SDXS-512)",
          "training": "from-scratch CNN training on the digits example (autocast)"}


def _loaded(key: str):
    """The registry's model for ``key`` and a note on its weights, or None where it has no source here."""
    from core import registry
    from core.errors import ModelUnavailable

    try:
        loaded = registry.load(key)
        return loaded.model, f"real weights ({loaded.resolution.source})"
    except ModelUnavailable:
        return None, "random weights (seeded; real ones need the Hub or $UBT_MODEL_DIR)"


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    from core import registry

    return registry.load("minilm-l6").model.tokenizer  # BERT uncased WordPiece, as DistilBERT's


def build(family: str):
    """(module, probe, weights note) for one family."""
    import torch

    from core import precision_probes as probes

    torch.manual_seed(0)
    if family == "clip":
        bundle, note = _loaded("clip-vit-b-32")
        if bundle is None:
            import open_clip

            model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
            return model.eval(), probes.clip_probe(preprocess, open_clip.get_tokenizer("ViT-B-32")), note
        return bundle.model, probes.clip_probe(bundle.preprocess, bundle.tokenizer), note
    if family == "text-encoder":
        bundle, note = _loaded("minilm-l6")
        return bundle.model, probes.text_encoder_probe(bundle.tokenizer, bundle.max_length), note
    if family == "classifier":
        bundle, note = _loaded("distilbert-sst2")
        if bundle is None:
            from transformers import DistilBertConfig, DistilBertForSequenceClassification

            tokenizer = _minilm_tokenizer()
            model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=len(tokenizer))).eval()
            return model, probes.classifier_probe(tokenizer, 128), note
        return bundle.model, probes.classifier_probe(bundle.tokenizer, bundle.max_length), note
    if family == "captioner":
        bundle, note = _loaded("blip-base")
        if bundle is None:
            from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

            tokenizer = _minilm_tokenizer()
            tokenizer.add_special_tokens({"bos_token": "[DEC]"})
            ids = dict(bos_token_id=tokenizer.bos_token_id, sep_token_id=tokenizer.sep_token_id,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
            config = BlipConfig(text_config=dict(vocab_size=len(tokenizer), **ids))
            processor = BlipProcessor(BlipImageProcessor(size={"height": 384, "width": 384}), tokenizer)
            return BlipForConditionalGeneration(config).eval(), probes.captioner_probe(processor), note
        return bundle.model, probes.captioner_probe(bundle.processor), note
    if family == "whisper":
        bundle, note = _loaded("whisper-tiny")
        if bundle is None:
            from whisper.model import ModelDimensions, Whisper

            model = Whisper(ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6,
                                            n_audio_layer=4, n_vocab=51865, n_text_ctx=448, n_text_state=384,
                                            n_text_head=6, n_text_layer=4))
            torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
            return model.eval(), probes.whisper_probe(), note
        return bundle.model, probes.whisper_probe(), note
    if family == "diffusion":
        bundle, note = _loaded("sdxs-512")
        if bundle is None:
            return None, None, "not measured: no text-to-image weights here (the Hub or $UBT_MODEL_DIR)"
        return bundle.pipe, probes.diffusion_probe(), note
    raise KeyError(family)


def training_row(quick: bool) -> dict:
    """The from-scratch CNN on the digits example: an epoch in float32 and with autocast, held-out accuracy."""
    from core.finetune.arms import ScratchSettings
    from core.finetune.arms.from_scratch import scratch_images
    from core.finetune.data.examples import example_digits
    from core.precision import MIN_SPEEDUP

    data = example_digits()
    idx = list(range(len(data.items)))
    train_idx, test_idx = idx[::2], idx[1::2]
    settings = ScratchSettings(epochs=3 if quick else 10, time_budget_s=300.0, patience=None)
    results = {}
    for value in ("0", "1"):
        os.environ["UBT_BF16"] = value
        from core.config import get_settings

        get_settings.cache_clear()
        results[value] = scratch_images(data, train_idx, test_idx, settings)
    os.environ["UBT_BF16"] = "0"
    fp32, bf16 = results["0"], results["1"]
    from core.precision import wilson_interval

    low, high = wilson_interval(round(fp32.accuracy * len(test_idx)), len(test_idx))
    speedup = fp32.train_s / max(bf16.train_s, 1e-9)
    met = low <= bf16.accuracy <= high and speedup >= MIN_SPEEDUP
    return {"workload": TITLES["training"] + ": bf16 autocast vs float32", "ours": bf16.train_s,
            "reference": fp32.train_s, "unit": "s", "ratio": round(speedup, 3),
            "agreement": round(bf16.accuracy, 4), "target": f"ratio >= {MIN_SPEEDUP:g}, accuracy in [{low:.3f}, {high:.3f}]",
            "status": "met" if met else "not met", "note": f"float32 accuracy {fp32.accuracy:.3f}"}


def main() -> None:
    import torch

    from core import engines
    from core.cpu import this_cpu
    from core.precision import MIN_SPEEDUP, TOLERANCES, measure, native_bf16

    args = parse_args(__doc__)
    torch.set_num_threads(engines.threads())
    cpu = this_cpu()
    native, why = native_bf16(cpu)
    where = f"CPU: {cpu.describe()}; {engines.threads()} thread(s)"
    rows = []
    for family in FAMILIES:
        tolerance, need = TOLERANCES[family], TARGETS.get(family, MIN_SPEEDUP)
        row = {"workload": f"{TITLES[family]}: bf16 weights vs float32", "unit": "s", "tolerance": tolerance.describe(),
               "target": f"ratio >= {need:g} and {tolerance.describe()}"}
        if not native:
            rows.append({**row, "status": "not measured: no bf16 instructions here", "note": f"{why}; {where}"})
            continue
        try:
            if family == "training":
                rows.append({**training_row(args.quick), "note": where})
                continue
            module, probe, note = build(family)
            if module is None:
                rows.append({**row, "status": note, "note": where})
                continue
            record = measure(module, replace(probe, repeats=3 if args.quick else 7))
            met = record["speedup"] >= need and tolerance.holds(record["agreement"])
            rows.append({**row, "ours": record["bf16_s"], "reference": record["fp32_s"], "ratio": record["speedup"],
                         "agreement": round(record["agreement"], 6), "status": "met" if met else "not met",
                         "note": f"{note}; {where}"})
        except Exception as err:  # one family failing must not hide the others
            rows.append({**row, "status": f"failed: {type(err).__name__}: {str(err)[:200]}", "note": where})
    report("bf16", rows)


if __name__ == "__main__":
    main()
