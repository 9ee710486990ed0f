"""Resident memory after using every page's default model that can run here, in one server-like process.

Usage: python -m bench.memory [--quick]
"""
from __future__ import annotations

import os

from bench.common import parse_args, report, verdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parse_args(__doc__)
    from core import audio, engines, imagegen, registry, speech, text, textgen
    from core.engines import generate
    from core.config import get_settings
    from core.finetune import arms, data
    from core.measure import rss_mb

    budget = get_settings().memory_budget_mb
    rows = [{"workload": "process start (core imported)", "ours": rss_mb(), "unit": "MB"}]
    steps = [
        ("Text: sentiment (MiniLM + head)", lambda: text.classify(engines.load_sentiment("minilm-sentiment"), ["fine"])),
        ("Text: generation (SmolLM2-135M)", lambda: generate.complete(engines.load("smollm2-135m", engines.TORCH), "hi", textgen.GenerationSettings(max_new_tokens=4))),
        ("Speech: faster-whisper tiny.en on the sample", lambda: speech.transcribe(registry.load("faster-whisper-tiny-en"), audio.decode(speech.sample_clip()[0]))),
        ("Image generation: digits", lambda: imagegen.generate_digits(registry.load(imagegen.DIGITS_KEY), 3, count=4, steps=4)),
        ("Fine-tune: transfer arm on the shipped CSV", lambda: _transfer(data, arms)),
    ]
    for name, run in steps:
        run()
        rss = rss_mb()
        rows.append({"workload": f"after {name}", "ours": rss, "unit": "MB", "cache_mb": registry.CACHE.used_mb(),
                     "target": f"RSS <= {budget} MB budget", "status": verdict(rss, budget, at_most=True),
                     "note": "RSS includes torch, libraries and Python"})
    rows.append({"workload": "not loaded here (no offline weights)", "note": "CLIP, BLIP, DistilBERT-SST2, GPT-2, openai-whisper, text-to-image"})
    report("memory", rows)


def _transfer(data, arms) -> None:
    labelled = data.example_sentiment()
    train_idx, test_idx = data.split(labelled)
    arms.run_arm("transfer", labelled, train_idx, test_idx, arms.TransferSettings())


if __name__ == "__main__":
    main()
