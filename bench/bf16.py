"""bf16 on this CPU (AVX512_BF16): the CLIP ViT-B/32 image tower in bfloat16 against float32, speed and agreement.

The tolerance is fixed here, before measuring: bf16 may become a default only where, on the same inputs,
- the lowest cosine similarity between a bf16 image embedding and its float32 one is >= MIN_COSINE, and
- the median bf16 time is at most 1 / MIN_SPEEDUP of float32 (>= MIN_SPEEDUP× faster), both in the same run.
Two ways of running bf16 are measured: autocast (float32 weights, matrix products in bf16) and the whole tower cast
to bf16. Images: seeded random pictures at the tower's 224×224 input, batch 1 and batch 8.

Weights: the real laion2b_s34b_b79k weights when the registry finds them (Hub cache or $UBT_MODEL_DIR); otherwise
the same architecture with open_clip's seeded random initialisation, which measures the speed truthfully but the
agreement only as a proxy (trained weights have other value ranges). The report says which was used.

Usage: python -m bench.bf16 [--quick]
"""
from __future__ import annotations

import os

from bench.common import paired, parse_args, report, verdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
KEY = "clip-vit-b-32"
MIN_COSINE, MIN_SPEEDUP = 0.999, 1.3  # fixed before measuring


def _tower():
    """The CLIP image tower in float32 and where its weights came from."""
    from core import registry
    from core.catalog import get_spec
    from core.errors import ModelUnavailable

    try:
        return registry.load(KEY).model.model.visual.eval(), "real weights (" + registry.resolve(get_spec(KEY)).source + ")"
    except ModelUnavailable:
        import open_clip
        import torch

        torch.manual_seed(0)
        model = open_clip.create_model(get_spec(KEY).options.get("arch", "ViT-B-32"), pretrained=None)
        return model.visual.eval(), "random weights (seeded; real ones need the Hub or $UBT_MODEL_DIR)"


def main() -> None:
    import copy

    import torch

    from core import engines

    args = parse_args(__doc__)
    torch.set_num_threads(engines.threads())
    tower, weights = _tower()
    cast = copy.deepcopy(tower).to(torch.bfloat16)
    flags = open("/proc/cpuinfo").read()
    cpu = ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "no bf16 instructions"
    rows = []
    repeats = 5 if args.quick else 15
    for batch in (1, 8):
        images = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch)) * 2 - 1
        with torch.inference_mode():
            reference = tower(images).float()

            def fp32():
                return tower(images)

            def autocast():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return tower(images)

            def bf16():
                return cast(images.to(torch.bfloat16))

            for name, run in (("autocast bf16", autocast), ("bf16 weights", bf16)):
                cosine = float(torch.nn.functional.cosine_similarity(run().float(), reference, dim=-1).min())
                result = paired(run, fp32, repeats, warmup=2)
                met = verdict(result.ratio, MIN_SPEEDUP, (result.low, result.high)) == "met" and cosine >= MIN_COSINE
                rows.append({
                    "workload": f"CLIP ViT-B/32 image tower, batch {batch}: {name} vs float32", "ours": result.ours_s,
                    "reference": result.reference_s, "unit": "s", "ratio": result.ratio, "spread": result.spread,
                    "cosine_min": round(cosine, 6), "target": f"ratio >= {MIN_SPEEDUP:g} and cosine >= {MIN_COSINE}",
                    "status": "met" if met else "not met",
                    "note": f"{weights}; CPU: {cpu}; {engines.threads()} thread(s)",
                })
    report("bf16", rows)


if __name__ == "__main__":
    main()
