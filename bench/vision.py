"""Image-text benchmark: CLIP image encoding and BLIP captioning through core.vision, against plain
open_clip / transformers calls of the same model in the same run, and against the FLOP floor.

No real weights can be downloaded here, so both models are built with RANDOM weights at the REAL
architecture (open_clip ``ViT-B-32`` without a pretrained tag; ``BlipForConditionalGeneration(BlipConfig())``,
which is BLIP base). The compute cost is the same as with the trained weights; the captions are noise.

Run: ``.venv/bin/python -m bench.vision --quick``
"""
from __future__ import annotations

import time

import numpy as np
from typing import Callable

from bench.common import compared, paired, parse_args, report, verdict

ACHIEVABLE_GFLOPS = 60.0  # DESIGN.md: this machine sustains ~50-60 GFLOP/s in fp32
CLIP_FLOOR_MS = 150.0  # DESIGN.md: ViT-B/32 image tower ~4.4 GMAC (8.8 GFLOP) per image
CAPTION_TOKENS = 20
NOTE = "random weights, real architecture (no Hub here); compute cost as with trained weights"


def counted_gflops(fn: Callable[[], object]) -> float:
    """FLOPs of one call, counted by torch's FlopCounterMode (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def bert_sized_tokenizer(vocab_size: int):
    """A WordPiece tokenizer with BLIP's special-token ids (pad 0, [SEP] 102, [DEC] 30522) and full vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 30522: "[DEC]"}
    vocab = {special.get(i, f"w{i}"): i for i in range(vocab_size)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", bos_token="[DEC]")


def sample_pictures(count: int) -> list:
    from core import images

    pool = [images.open_image(path.read_bytes(), path.name) for path in images.sample_images().values()]
    return [pool[i % len(pool)] for i in range(count)]


def clip_rows(repeats: int, device: str, dtype) -> list[dict]:
    import open_clip
    import torch

    from core import registry, vision

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", device=device)  # no tag: random init
    model = model.to(dtype).eval()
    registry.install(vision.CLIP_KEY, vision.ClipModel(model, preprocess, open_clip.get_tokenizer("ViT-B-32")), "random-init")
    one = torch.stack([preprocess(sample_pictures(1)[0])]).to(device, dtype)
    with torch.enable_grad():  # the counter misses nn.MultiheadAttention's no-grad fast path; count the plain path
        gflops = counted_gflops(lambda: model.encode_image(one))
    rows, results = [], {}
    for batch in (1, 16):
        pictures = sample_pictures(batch)

        def plain():
            with torch.no_grad():
                pixels = torch.stack([preprocess(p) for p in pictures]).to(device, dtype)
                features = model.encode_image(pixels)
                return (features / features.norm(dim=-1, keepdim=True)).float().cpu().numpy()

        result = results[batch] = paired(lambda: vision.image_features(registry.load(vision.CLIP_KEY), pictures, batch_size=16), plain, repeats)
        start = time.perf_counter()
        torch.stack([preprocess(p) for p in pictures])
        preprocess_s = time.perf_counter() - start
        rows.append(compared(f"CLIP ViT-B/32 image encoding, batch {batch}", result, unit="ms/image", scale=1000 / batch,
                             note=NOTE, counted_gflops_per_image=gflops, preprocess_share=preprocess_s / result.ours_s))
        if batch == 16 and device == "cpu":
            vs_floor = result.ours_s / batch * 1000 / CLIP_FLOOR_MS
            rows.append({"workload": "CLIP ViT-B/32 image encoding, batch 16: against the FLOP floor",
                         "ours": result.ours_s / batch * 1000, "unit": "ms/image", "floor": CLIP_FLOOR_MS,
                         "vs_floor": vs_floor, "target": "vs_floor <= 1.5", "status": verdict(vs_floor, 1.5, at_most=True),
                         "note": f"{gflops:.1f} GFLOP per image counted by torch; floor from DESIGN.md"})
    sixteen = sample_pictures(16)
    clip = registry.load(vision.CLIP_KEY)
    together = vision.image_features(clip, sixteen, batch_size=16)
    alone = np.concatenate([vision.image_features(clip, [p], batch_size=1) for p in sixteen])
    cosine = float((together * alone).sum(axis=1).min())
    per_image = {b: results[b].ours_s / b for b in results}
    rows.append({"workload": "CLIP ViT-B/32, 16 images: batches of 16 vs one at a time (ours)", "ours": per_image[16] * 1000,
                 "reference": per_image[1] * 1000, "unit": "ms/image", "ratio": per_image[1] / per_image[16],
                 "target": "ratio >= 1.5; features equal (cosine >= 0.9999)",
                 "status": verdict(per_image[1] / per_image[16], 1.5) if cosine >= 0.9999 else "not met",
                 "note": f"lowest cosine between an image's batched and lone features: {cosine:.6f}; "
                         "the Image-text page encodes its images in batches of 16"})
    return rows


def caption_rows(repeats: int, device: str, dtype) -> list[dict]:
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    from core import registry, vision

    torch.manual_seed(0)
    config = BlipConfig()  # BLIP base: ViT-B/16 at 384 px + 12-layer BERT-base decoder with cross-attention
    model = BlipForConditionalGeneration(config).to(device, dtype).eval()
    processor = BlipProcessor(BlipImageProcessor(), bert_sized_tokenizer(config.text_config.vocab_size))
    registry.install(vision.CAPTION_KEY, vision.Captioner(processor, model), "random-init")
    picture = sample_pictures(1)[0]

    def plain():
        with torch.no_grad():
            inputs = processor(images=picture, return_tensors="pt").to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            output = model.generate(**inputs, max_new_tokens=CAPTION_TOKENS)
            return processor.decode(output[0], skip_special_tokens=True)

    result = vision.caption(registry.load(vision.CAPTION_KEY), picture, max_new_tokens=CAPTION_TOKENS)
    gflops = counted_gflops(lambda: vision.caption(registry.load(vision.CAPTION_KEY), picture, max_new_tokens=CAPTION_TOKENS))
    timed = paired(lambda: vision.caption(registry.load(vision.CAPTION_KEY), picture, max_new_tokens=CAPTION_TOKENS), plain, repeats)
    return [compared(f"BLIP base caption, 1 image, greedy, {CAPTION_TOKENS} new tokens", timed, unit="ms/caption",
                     scale=1000, note=NOTE, counted_gflops_per_image=gflops,
                     preprocess_share=result.measurement.extra["preprocess_s"] / timed.ours_s,
                     tokens_per_s=result.measurement.extra["tokens_per_s"],
                     floor=gflops / ACHIEVABLE_GFLOPS * 1000 if device == "cpu" else None,
                     vs_floor=timed.ours_s * ACHIEVABLE_GFLOPS / gflops if device == "cpu" else None)]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    from core.device import choose_device

    choice = choose_device()
    print(f"Device: {choice.label()} (threads from UBT_THREADS). {NOTE}.")
    rows = clip_rows(3 if args.quick else 10, choice.device, choice.dtype)
    rows += caption_rows(3 if args.quick else 7, choice.device, choice.dtype)
    for row in rows:
        row["device"] = choice.label()
    report("vision", rows)


if __name__ == "__main__":
    main()
