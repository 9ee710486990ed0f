"""Image generation: seconds per denoising step, ours against plain diffusers with the same components.

Workloads: the tiny StableDiffusionPipeline of the tests at 256 and 512 px (ours: core.generation.generate_image
with its step callback, preview and own decode; reference: a plain ``pipe(prompt, ...)`` call), and the
bundled digits model at its native 16 px (ours: core.generation.generate_digits; reference: a plain
diffusers loop over the same UNet and DDIM scheduler). Seconds per step are measured as the difference
between runs of 20 and 2 steps (load, prompt encoding and decoding cancel out); ours and the reference
alternate, so load on the shared machine hits both alike. Ratio = reference / ours (>= 1.0: no slower).

Usage: .venv/bin/python -m bench.generation [--quick]
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import parse_args, report

FEW, MANY = 2, 20


def _paired(ours, reference, repeats: int) -> tuple[float, float]:
    """Seconds per step of two callables ``f(steps)``: difference of median run times, the two interleaved."""
    ours(FEW), reference(FEW)
    seconds: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for steps in (FEW, MANY):
            for name, fn in (("ours", ours), ("reference", reference)):
                start = time.perf_counter()
                fn(steps)
                seconds.setdefault((name, steps), []).append(time.perf_counter() - start)

    def per_step(name: str) -> float:
        return max(statistics.median(seconds[name, MANY]) - statistics.median(seconds[name, FEW]), 1e-9) / (MANY - FEW)

    return per_step("ours"), per_step("reference")


def _row(workload: str, ours: float, reference: float, note: str) -> dict:
    return {"workload": workload, "ours": ours, "reference": reference, "unit": "s/step",
            "ratio": reference / ours, "target": ">= 1.0", "note": note}


def tiny_pipeline_rows(repeats: int) -> list[dict]:
    import torch

    from core import generation, registry
    from tests import tiny_generation

    model = tiny_generation.text_to_image(Path(tempfile.mkdtemp(prefix="bench-gen-")), default_steps=2)
    registry.install("sdxs-512", model)
    rows = []
    for size in (256, 512):
        def ours(steps: int, size=size) -> None:
            request = generation.ImageRequest("a red fox in the snow", steps=steps, width=size, height=size, seed=0)
            generation.generate_image("sdxs-512", request, on_step=lambda update: None)

        def plain(steps: int, size=size) -> None:
            with torch.inference_mode():
                model.pipe("a red fox in the snow", num_inference_steps=steps, guidance_scale=0.0, width=size, height=size,
                           generator=torch.Generator("cpu").manual_seed(0))

        rows.append(_row(f"tiny SD pipeline {size} px", *_paired(ours, plain, repeats),
                         "ours adds a step callback with a latent preview, and decodes itself"))
    return rows


def digits_rows(repeats: int) -> list[dict]:
    import torch

    from core import generation, registry

    loaded = registry.load(generation.DIGITS_KEY)
    unet, scheduler = loaded.model.unet, loaded.model.scheduler
    count, guidance = 8, 2.0

    def ours(steps: int) -> None:
        generation.generate_digits(3, count=count, steps=steps, guidance=guidance, on_step=lambda update: None)

    def plain(steps: int) -> None:
        labels = torch.full((count,), 3)
        with torch.inference_mode():
            x = torch.randn((count, 1, 16, 16), generator=torch.Generator().manual_seed(0))
            scheduler.set_timesteps(steps)
            for t in scheduler.timesteps:
                both = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, torch.full_like(labels, 10)])).sample
                cond, uncond = both.chunk(2)
                x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample

    return [_row(f"bundled digits, {count} images at 16 px (its native size)", *_paired(ours, plain, repeats),
                 "reference: plain diffusers loop over the same UNet2DModel + DDIMScheduler")]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    from core.device import choose_device

    choose_device()
    repeats = 5 if args.quick else 15
    report("generation", tiny_pipeline_rows(repeats) + digits_rows(repeats))


if __name__ == "__main__":
    main()
