"""Fine-tune benchmarks: features for 500 texts and 500 images, head training, one fine-tune epoch and
one from-scratch CNN epoch, each against a plain loop doing the same work in the same run.

"ratio" is reference / ours: above 1 ours is faster, below 1 our plumbing costs that much. Ours and the
reference run alternately in pairs (bench.common.paired), so a busy machine hurts both alike. The plain
training loops use torch's default AdamW; ours uses the fused AdamW kernel (core/finetune/arms/loop.py: adamw).

Usage: python -m bench.finetune [--quick]
"""
from __future__ import annotations

import copy
import os
import time

from bench.common import compared, median_time, paired, parse_args, report, verdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ITEMS = 500
TEST_ITEMS = 50


def _texts() -> tuple:
    """500 training texts (the shipped CSV, cycled with a counter) and 50 held-out ones, labelled."""
    from core.finetune import data

    base = data.example_sentiment()
    n = ITEMS + TEST_ITEMS
    items = [f"{base.items[i % len(base.items)]} (#{i})" for i in range(n)]
    labels = [base.labels[i % len(base.labels)] for i in range(n)]
    labelled = data.LabelledData("text", items, labels, [], "bench-texts", "bench")
    return labelled, list(range(ITEMS)), list(range(ITEMS, n))


def _plain_text_features(tokenizer, model, texts, batch_size: int = 32):
    """What people write with transformers: tokenize, forward, mean-pool, normalise."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out).numpy()


def bench_text_features(repeats: int) -> list[dict]:
    """500 texts through MiniLM: our cached path (cold, then warm) vs a plain transformers loop."""
    from transformers import AutoModel, AutoTokenizer

    from core import registry
    from core.catalog import get_spec
    from core.finetune import features as feats

    labelled, train, _ = _texts()
    folder = registry.resolve(get_spec("minilm-l6")).location
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    feats.encode_texts("minilm-l6", labelled.items[:8])  # load ours outside the timing
    _plain_text_features(tokenizer, model, labelled.items[:8])

    def cold():
        feats.FEATURES.clear()
        feats.features_for(labelled, train, "minilm-l6")

    result = paired(cold, lambda: _plain_text_features(tokenizer, model, [labelled.items[i] for i in train]), repeats,
                    warmup=0)
    warm = median_time(lambda: feats.features_for(labelled, train, "minilm-l6"), repeats, warmup=0)
    return [
        compared(f"features, {ITEMS} texts, MiniLM (cache empty)", result,
                 note="reference: plain transformers loop, batch 32; ours sorts texts by length before batching"),
        {"workload": f"features, {ITEMS} texts, MiniLM (from the feature cache)", "ours": warm,
         "reference": result.reference_s, "unit": "s", "ratio": result.reference_s / warm, "target": "< 0.01 s",
         "status": verdict(warm, 0.01, at_most=True), "note": "retraining a head re-embeds nothing"},
    ]


def bench_image_features(repeats: int) -> list[dict]:
    """500 images through CLIP's image tower vs a plain open_clip loop (when CLIP can load here)."""
    import torch

    from core.finetune import data
    from core.finetune import features as feats

    reason = feats.unavailable_reason("clip-vit-b-32")
    if reason:
        return [{"workload": f"features, {ITEMS} images, CLIP ViT-B/32", "note": f"skipped: {reason}"}]
    from core import registry

    digits = data.example_digits(per_class=ITEMS // 10)
    indices = list(range(len(digits.items)))
    clip = registry.load("clip-vit-b-32").model

    def plain():
        with torch.inference_mode():
            for start in range(0, len(digits.items), 16):
                pixels = torch.stack([clip.preprocess(im) for im in digits.items[start : start + 16]])
                clip.model.encode_image(pixels.to(next(clip.model.parameters()).device), normalize=True)

    def cold():
        feats.FEATURES.clear()
        feats.features_for(digits, indices, "clip-vit-b-32")

    result = paired(cold, plain, repeats)
    return [compared(f"features, {len(indices)} images, CLIP ViT-B/32", result, note="reference: plain open_clip loop, batch 16")]


def bench_head(repeats: int) -> list[dict]:
    """Logistic-regression head on 500 cached MiniLM features: ours (fit + wrap) vs sklearn alone."""
    from sklearn.linear_model import LogisticRegression

    from core.finetune import arms
    from core.finetune import features as feats

    labelled, train, _ = _texts()
    values = feats.features_for(labelled, train, "minilm-l6").values
    y = [labelled.labels[i] for i in train]
    result = paired(lambda: arms.fit_head(values, y, 1.0, "minilm-l6"), lambda: LogisticRegression(max_iter=2000).fit(values, y),
                    repeats)
    return [compared(f"head training, {ITEMS} x 384 features", result,
                     note="reference: sklearn LogisticRegression.fit; ours is that call plus copying coef_ into a LinearHead")]


def _plain_epoch(step_batches, train_step, evaluate, threads: int) -> float:
    """Seconds of: held-out pass, one epoch of steps, held-out pass, on ``threads`` torch threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        evaluate()
        for rows in step_batches:
            train_step(rows)
        evaluate()
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def bench_fine_tune_epoch(repeats: int) -> list[dict]:
    """One epoch, top 2 MiniLM layers, batch 16, with a held-out pass before and after, vs a plain torch loop."""
    import torch

    from core import registry
    from core.finetune import arms
    from core.finetune import features as feats

    labelled, train, test = _texts()
    settings = arms.FineTuneSettings(top_layers=2, epochs=1, time_budget_s=3600, batch_size=16)
    threads = arms.training_threads()
    backbone = feats.text_backbone(registry.load("minilm-l6"))
    y = torch.tensor([labelled.labels[i] == "positive" for i in train]).long()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()

    def plain() -> float:
        torch.manual_seed(0)
        encoder = copy.deepcopy(backbone.model).float()
        encoder.requires_grad_(False)
        for layer in encoder.encoder.layer[-2:]:
            layer.requires_grad_(True)
        head = torch.nn.Linear(encoder.config.hidden_size, 2)
        optimiser = torch.optim.AdamW([{"params": head.parameters(), "lr": 5e-3},
                                       {"params": [p for p in encoder.parameters() if p.requires_grad], "lr": 5e-5}])

        def forward(texts):
            batch = backbone.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            batch.pop("token_type_ids", None)
            return head(feats.pooled(encoder, batch))

        def train_step(rows):
            encoder.train()
            loss = torch.nn.functional.cross_entropy(forward([labelled.items[train[r]] for r in rows]), y[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

        def evaluate():
            encoder.eval()
            with torch.inference_mode():
                forward([labelled.items[i] for i in test])

        return _plain_epoch([order[s : s + 16] for s in range(0, len(order), 16)], train_step, evaluate, threads)

    result = paired(lambda: arms.run_fine_tune(labelled, train, test, settings).train_s, plain, repeats, warmup=0,
                    self_timed=True)
    return [compared(f"fine-tune epoch, {ITEMS} texts, MiniLM top 2 layers, batch 16", result,
                     note=f"reference: plain torch loop; both on {threads} thread(s), held-out pass before and after")]


def bench_cnn_epoch(repeats: int) -> list[dict]:
    """One epoch of the from-scratch CNN on 1,347 digits (16 px), vs a plain torch loop on the same tensors."""
    import numpy as np
    import torch

    from core.finetune import arms, data

    digits = data.example_digits()
    train, test = data.split(digits)
    settings = arms.ScratchSettings(epochs=1, time_budget_s=3600, image_size=16)
    threads = arms.training_threads()
    pixels = arms.images_to_array(digits.items, 16, 1)
    pixels = torch.from_numpy((pixels - pixels[train].mean()) / pixels[train].std())
    labels = digits.classes()
    y = torch.tensor([labels.index(digits.labels[i]) for i in train])
    x_train, x_test = pixels[train], pixels[test]
    order = np.random.default_rng(0).permutation(len(train)).tolist()

    def plain() -> float:
        torch.manual_seed(0)
        model = arms.small_cnn(1, 10)
        optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)

        def train_step(rows):
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x_train[rows]), y[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

        def evaluate():
            model.eval()
            with torch.inference_mode():
                model(x_test).argmax(-1)

        return _plain_epoch([order[s : s + 32] for s in range(0, len(order), 32)], train_step, evaluate, threads)

    result = paired(lambda: arms.run_from_scratch(digits, train, test, settings).train_s, plain, repeats, self_timed=True)
    return [compared(f"from-scratch CNN epoch, {len(train)} digits 16 px, batch 32", result,
                     note=f"reference: plain torch loop; both on {threads} thread(s), held-out pass before and after")]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = 3 if args.quick else 7
    rows = bench_text_features(repeats) + bench_image_features(repeats) + bench_head(repeats * 5)
    rows += bench_fine_tune_epoch(repeats) + bench_cnn_epoch(repeats)
    report("finetune", rows)


if __name__ == "__main__":
    main()
