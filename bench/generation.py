"""Image generation: seconds per denoising step, ours against plain diffusers with the same components.

Workloads: the tiny StableDiffusionPipeline of the tests at 256 and 512 px (ours: core.imagegen.generate_image
with its step callback, preview and own decode; reference: a plain ``pipe(prompt, ...)`` call), and the
bundled digits model at its native 16 px (ours: core.imagegen.generate_digits; reference: a plain
diffusers loop over the same UNet and DDIM scheduler). Seconds per step are measured as the difference
between runs of 20 and 2 steps (load, prompt encoding and decoding cancel out); ours and the reference
alternate, so load on the shared machine hits both alike. Ratio = reference / ours (>= 1.0: no slower);
the spread is that of the ratio over the pairs of 20-step runs.

Usage: .venv/bin/python -m bench.generation [--quick]
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Paired, compared, own_overhead_s, paired, parse_args, report, summarise

FEW, MANY = 2, 20


def _per_step(ours, reference, repeats: int) -> Paired:
    """Seconds per step of two callables ``f(steps)``: pair i of MANY-step runs minus pair i of FEW-step runs."""
    few, many = (paired(lambda n=n: ours(n), lambda n=n: reference(n), repeats) for n in (FEW, MANY))
    steps = [((m[0] - f[0]) / (MANY - FEW), (m[1] - f[1]) / (MANY - FEW)) for f, m in zip(few.pairs, many.pairs)]
    return summarise(steps, many.peak_mb)


def tiny_pipeline_rows(repeats: int) -> list[dict]:
    import torch

    from core import imagegen, registry
    from tests.support import tiny_generation

    model = tiny_generation.text_to_image(Path(tempfile.mkdtemp(prefix="bench-gen-")), default_steps=2)
    registry.install("sdxs-512", model)
    rows = []
    for size in (256, 512):
        def ours(steps: int, size=size) -> None:
            request = imagegen.ImageRequest("a red fox in the snow", steps=steps, width=size, height=size, seed=0)
            imagegen.generate_image(registry.load("sdxs-512"), request, on_progress=lambda update: None)

        def plain(steps: int, size=size) -> None:
            with torch.inference_mode():
                model.pipe("a red fox in the snow", num_inference_steps=steps, guidance_scale=0.0, width=size, height=size,
                           generator=torch.Generator("cpu").manual_seed(0))

        own = own_overhead_s(lambda: ours(MANY), type(model.pipe), "__call__")
        rows.append(compared(f"tiny SD pipeline {size} px", _per_step(ours, plain, repeats), unit="s/step",
                             note=f"ours adds a step callback with a latent preview, and decodes itself; "
                                  f"ours spends {own * 1000:.1f} ms per {MANY}-step run outside the pipeline call"))
    return rows


def digits_rows(repeats: int) -> list[dict]:
    import torch

    from core import imagegen, registry

    loaded = registry.load(imagegen.DIGITS_KEY)
    unet, scheduler = loaded.model.unet, loaded.model.scheduler
    count, guidance = 8, 2.0

    def ours(steps: int) -> None:
        imagegen.generate_digits(loaded, 3, count=count, steps=steps, guidance=guidance, on_progress=lambda update: None)

    def plain(steps: int) -> None:
        labels = torch.full((count,), 3)
        with torch.inference_mode():
            x = torch.randn((count, 1, 16, 16), generator=torch.Generator().manual_seed(0))
            scheduler.set_timesteps(steps)
            for t in scheduler.timesteps:
                both = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, torch.full_like(labels, 10)])).sample
                cond, uncond = both.chunk(2)
                x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample

    return [compared(f"bundled digits, {count} images at 16 px (its native size)", _per_step(ours, plain, repeats),
                     unit="s/step", note="reference: plain diffusers loop over the same UNet2DModel + DDIMScheduler")]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    from core.device import choose_device

    choose_device()
    repeats = 5 if args.quick else 15
    report("generation", tiny_pipeline_rows(repeats) + digits_rows(repeats))


if __name__ == "__main__":
    main()
