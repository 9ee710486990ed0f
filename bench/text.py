"""Text benchmarks: server start to Home painted, sentiment latency against the FLOP floor,
generation tokens/s against plain ``generate``, and resident memory with both text models loaded.

Usage: python -m bench.text [--quick]
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, median_time, parse_args, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DISTILBERT_FLOOR_S = 0.047  # DESIGN.md: DistilBERT, 32 tokens, on this 2-core machine
SENTENCE_32 = "The plot was thin and the pacing slow, yet the two lead actors gave warm, funny and honest performances that kept all of the big family watching."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _time_to_paint(script: Path, cwd: Path, driver) -> float:
    """Seconds from launching `streamlit run script` to its first h1 shown in Chromium."""
    import urllib.request

    from selenium.webdriver.common.by import By

    port = _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port), "--server.headless", "true"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        driver.get(f"http://127.0.0.1:{port}/")
        while not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMainBlockContainer'] h1"):
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(10)


def bench_home_paint(repeats: int) -> list[dict]:
    """Our Home against a one-line Streamlit app, each started fresh."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return [{"workload": "server start -> Home painted", "note": "skipped: chromium/chromedriver not installed"}]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    hello = Path(tempfile.mkdtemp()) / "hello.py"
    hello.write_text("import streamlit as st\nst.title('Hello')\n")
    try:
        ours = sorted(_time_to_paint(ROOT / "app.py", ROOT, driver) for _ in range(repeats))[repeats // 2]
        ref = sorted(_time_to_paint(hello, hello.parent, driver) for _ in range(repeats))[repeats // 2]
    finally:
        driver.quit()
    return [{"workload": "server start -> Home painted", "ours": ours, "reference": ref, "unit": "s",
             "ratio": ref / ours, "target": "< 2 s", "note": "reference: a one-line Streamlit app"}]


def bench_sentiment(repeats: int) -> list[dict]:
    """DistilBERT-size classifier on one 32-token sentence: ours vs transformers pipeline vs the FLOP floor."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast, pipeline

    from core import registry, text
    from core.catalog import get_spec

    vocab_dir = registry.packaged_path(get_spec("minilm-l6"))  # bert-base-uncased vocabulary, as DistilBERT's
    tokenizer = DistilBertTokenizerFast.from_pretrained(vocab_dir)
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(id2label={0: "NEGATIVE", 1: "POSITIVE"})).eval()
    registry.install("distilbert-sst2", text.SequenceClassifier(tokenizer, model, ["negative", "positive"]))
    tokens = len(tokenizer(SENTENCE_32)["input_ids"])
    ours = median_time(lambda: text.classify([SENTENCE_32], "distilbert-sst2"), repeats, warmup=2)
    plain = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    ref = median_time(lambda: plain(SENTENCE_32), repeats, warmup=2)
    rows = [{"workload": f"sentiment, DistilBERT-size (random weights), {tokens} tokens", "ours": ours, "reference": ref,
             "unit": "s", "ratio": ref / ours, "floor": DISTILBERT_FLOOR_S, "vs_floor": ours / DISTILBERT_FLOOR_S,
             "target": "ratio >= 1.0; within 2x of floor", "note": "reference: transformers pipeline"}]
    registry.CACHE.clear()
    real = median_time(lambda: text.classify([SENTENCE_32], "minilm-sentiment"), repeats, warmup=2)
    rows.append({"workload": "sentiment, packaged MiniLM + head (real weights)", "ours": real, "unit": "s",
                 "note": "offline default model"})
    return rows


def bench_int8(repeats: int) -> list[dict]:
    """Packaged MiniLM sentiment on 64 shipped sentences: int8 dynamic quantisation against float32."""
    import csv

    from core import registry, text
    from core.catalog import ASSETS

    with open(ASSETS / "sentiment.csv", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:64]
    registry.CACHE.clear()
    comparison = text.compare_int8(texts, "minilm-sentiment")
    fp32 = median_time(lambda: text.classify(texts, "minilm-sentiment"), repeats)
    int8 = median_time(lambda: text.classify(texts, "minilm-sentiment", int8=True), repeats)
    return [{"workload": "sentiment, MiniLM + head, 64 texts: int8 vs float32", "ours": int8, "reference": fp32, "unit": "s",
             "ratio": fp32 / int8, "target": ">= 1.5x with labels unchanged",
             "note": f"labels agree on {comparison.agreement:.1%}, scores move <= {comparison.max_score_change:.3f}"}]


def bench_generation(new_tokens: int) -> list[dict]:
    """SmolLM2-135M (packaged, real weights): our streaming loop vs plain generate, greedy, same token count."""
    import torch

    from core import registry, text

    settings = text.GenerationSettings(max_new_tokens=new_tokens, temperature=0.0)
    prompt = "Explain in two sentences what a neural network is."
    text.generate("smollm2-135m", prompt, settings)  # load + warm
    lm = registry.load("smollm2-135m").model
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)["input_ids"]
    ours_runs, ref_runs = [], []
    for _ in range(3):
        stream = text.TextStream("smollm2-135m", prompt, settings, stop_at_eos=False)
        for _ in stream:
            pass
        ours_runs.append(stream.result.measurement.extra["tokens_per_s"])
        start = time.perf_counter()
        with torch.inference_mode():
            out = lm.model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        ref_runs.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - start))
    ours, ref = sorted(ours_runs)[1], sorted(ref_runs)[1]
    return [{"workload": f"generation, SmolLM2-135M (packaged), {new_tokens} new tokens", "ours": ours, "reference": ref,
             "unit": "tokens/s", "ratio": ours / ref, "target": "ratio >= 1.0", "note": "reference: model.generate, greedy"}]


def bench_threads_and_attention(repeats: int) -> list[dict]:
    """DistilBERT-size forward on 32 tokens: 1 thread against all cores, and SDPA against eager attention."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

    from core import registry
    from core.catalog import get_spec

    tokenizer = DistilBertTokenizerFast.from_pretrained(registry.packaged_path(get_spec("minilm-l6")))
    batch = tokenizer([SENTENCE_32], return_tensors="pt")
    models = {}
    for attention in ("sdpa", "eager"):
        torch.manual_seed(0)
        config = DistilBertConfig(attn_implementation=attention)
        models[attention] = DistilBertForSequenceClassification(config).eval()

    def forward(model):
        with torch.inference_mode():
            return model(**batch).logits

    cores = torch.get_num_threads()
    timings = {}
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        timings[threads] = median_time(lambda: forward(models["sdpa"]), repeats, warmup=2)
    torch.set_num_threads(cores)
    sdpa = median_time(lambda: forward(models["sdpa"]), repeats, warmup=2)
    eager = median_time(lambda: forward(models["eager"]), repeats, warmup=2)
    same = bool(torch.allclose(forward(models["sdpa"]), forward(models["eager"]), atol=1e-4))
    return [
        {"workload": f"DistilBERT-size, 32 tokens: {cores} threads vs 1", "ours": timings[cores], "reference": timings[1],
         "unit": "s", "ratio": timings[1] / timings[cores], "note": "ours = the default (one thread per core)"},
        {"workload": "DistilBERT-size, 32 tokens: SDPA vs eager attention", "ours": sdpa, "reference": eager, "unit": "s",
         "ratio": eager / sdpa, "note": f"transformers' default is SDPA; logits equal within 1e-4: {same}"},
    ]


def bench_memory() -> list[dict]:
    """Resident memory of this process with both offline text models loaded."""
    from core import registry, text
    from core.measure import rss_mb

    registry.CACHE.clear()
    text.classify(["warm"], "minilm-sentiment")
    text.generate("smollm2-135m", "hi", text.GenerationSettings(max_new_tokens=2))
    return [{"workload": "resident memory, MiniLM sentiment + SmolLM2 loaded", "ours": rss_mb(), "unit": "MB",
             "cache_mb": registry.CACHE.used_mb(), "target": "<= memory budget (UBT_MEMORY_BUDGET_MB)"}]


def main() -> None:
    args = parse_args(__doc__)
    repeats = 3 if args.quick else 10
    rows = bench_home_paint(1 if args.quick else 3)
    rows += bench_sentiment(repeats)
    rows += bench_int8(repeats)
    rows += bench_threads_and_attention(repeats)
    rows += bench_generation(16 if args.quick else 64)
    rows += bench_memory()
    report("text", rows)


if __name__ == "__main__":
    main()
