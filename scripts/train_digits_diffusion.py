"""Train the bundled digits generator from scratch: a small class-conditional diffusion model.

Data: scikit-learn's 1,797 handwritten digits (8x8, 0-16), upsampled bilinearly to 16x16 and scaled
to [-1, 1]. Model: a diffusers UNet2DModel with a class embedding for the digits 0-9 plus one
"no class" label; the label is dropped 10 % of the time so sampling can use classifier-free
guidance. Noise: DDPM with a cosine schedule, epsilon prediction; samples use DDIM in a few steps.
An exponential moving average of the weights is what gets saved.

Writes assets/digits_diffusion/: unet/ (safetensors + config.json), scheduler/ (DDIM config),
training.json (time, steps, hardware, loss curve, accuracy of samples) and loss_curve.png.

Usage: python scripts/train_digits_diffusion.py [--steps 800] [--batch-size 128]
On a machine shared with other jobs, UBT_THREADS=1 trains faster than two threads fighting for the cores.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from core.catalog import ASSETS  # noqa: E402
from core.device import choose_device  # noqa: E402
from core.imagegen import (  # noqa: E402
    DIGITS_SIZE, NULL_CLASS, TRAINING_RECORD, digits_grid, digits_to_8x8, sample_digits,
)

SEED = 0
OUT = ASSETS / "digits_diffusion"
UNET_CONFIG = dict(
    sample_size=DIGITS_SIZE, in_channels=1, out_channels=1, layers_per_block=1,
    block_out_channels=(16, 32, 64), down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=32,
    num_class_embeds=NULL_CLASS + 1,
)
NOISE_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon", clip_sample=True)
LABEL_DROPOUT = 0.1
EVAL_STEPS, EVAL_GUIDANCE, EVAL_PER_CLASS = 20, 2.0, 20


def digits_tensor() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as (n, 1, 16, 16) in [-1, 1], and their labels."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    return images * 2 - 1, torch.tensor(data.target, dtype=torch.long)


def sample_accuracy(unet, scheduler) -> tuple[float, list[float], np.ndarray]:
    """Share of generated digits that a logistic regression trained on the real digits reads as the asked class."""
    data = load_digits()
    classifier = LogisticRegression(max_iter=5000).fit(data.data, data.target)
    labels = torch.arange(10).repeat_interleave(EVAL_PER_CLASS)
    with torch.inference_mode():
        images, _ = sample_digits(unet, scheduler, labels, EVAL_STEPS, EVAL_GUIDANCE, torch.Generator().manual_seed(SEED))
    pixels = (images[:, 0].numpy() + 1) / 2
    predicted = classifier.predict(digits_to_8x8(pixels))
    hits = predicted == labels.numpy()
    per_class = [float(hits[labels.numpy() == d].mean()) for d in range(10)]
    return float(hits.mean()), per_class, images.numpy()


def loss_curve_png(curve: list[list[float]], path: Path) -> None:
    """Draw the loss curve (log scale) as a small PNG with PIL, axes labelled."""
    width, height, left, bottom, top, right = 640, 360, 64, 40, 24, 16
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    steps = [s for s, _ in curve]
    logs = [math.log10(loss) for _, loss in curve]
    lo, hi = math.floor(min(logs) * 10) / 10, math.ceil(max(logs) * 10) / 10
    x = lambda s: left + s / steps[-1] * (width - left - right)  # noqa: E731
    y = lambda v: top + (hi - v) / max(hi - lo, 1e-9) * (height - top - bottom)  # noqa: E731
    draw.rectangle([left, top, width - right, height - bottom], outline="#888")
    for tick in np.linspace(lo, hi, 5):
        draw.line([left - 4, y(tick), left, y(tick)], fill="#888")
        draw.text((4, y(tick) - 6), f"{10 ** tick:.3f}", fill="#333")
    for tick in np.linspace(0, steps[-1], 5):
        draw.line([x(tick), height - bottom, x(tick), height - bottom + 4], fill="#888")
        draw.text((x(tick) - 12, height - bottom + 8), f"{int(tick)}", fill="#333")
    draw.line([(x(s), y(v)) for s, v in zip(steps, logs)], fill="#1f77b4", width=2)
    draw.text((left + 8, 4), "training loss (MSE on noise, log scale) by step", fill="#111")
    image.save(path)


def hardware(choice) -> str:
    """CPU model, core count and the device choice, e.g. ``AMD EPYC, 2 cores (cpu · float32 · 1 thread(s))``."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores ({choice.label()})"


def train(steps: int, batch_size: int, lr: float) -> None:
    choice = choose_device()
    torch.manual_seed(SEED)
    images, labels = digits_tensor()
    unet = UNet2DModel(**UNET_CONFIG)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    noise = DDPMScheduler(**NOISE_CONFIG)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(steps // 20, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))),
    )
    generator = torch.Generator().manual_seed(SEED)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        clean, y = images[index], labels[index].clone()
        y[torch.rand(batch_size, generator=generator) < LABEL_DROPOUT] = NULL_CLASS
        eps = torch.randn(clean.shape, generator=generator)
        t = torch.randint(0, noise.config.num_train_timesteps, (batch_size,), generator=generator)
        loss = F.mse_loss(unet(noise.add_noise(clean, eps, t), t, class_labels=y).sample, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for target, source in zip(ema.parameters(), unet.parameters()):
                target.lerp_(source, 1 - decay)
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}/{steps}  loss {np.mean(losses[-100:]):.4f}  {time.perf_counter() - start:.0f} s", flush=True)
    train_seconds = time.perf_counter() - start

    every = max(steps // 100, 1)
    curve = [[s + every, round(float(np.mean(losses[s : s + every])), 5)] for s in range(0, steps, every)]
    sampler = DDIMScheduler.from_config(noise.config)
    accuracy, per_class, samples = sample_accuracy(ema, sampler)
    tmp = OUT.with_name(OUT.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    ema.save_pretrained(tmp / "unet", safe_serialization=True)
    sampler.save_pretrained(tmp / "scheduler")
    record = {
        "data": "sklearn.datasets.load_digits (1,797 images, 8x8) upsampled to 16x16",
        "model": "diffusers UNet2DModel, class-conditional (10 digits + 1 'no class' for guidance)",
        "parameters": sum(p.numel() for p in unet.parameters()),
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": lr,
        "label_dropout": LABEL_DROPOUT,
        "noise_schedule": "DDPM, 1000 steps, cosine (squaredcos_cap_v2), epsilon prediction; EMA weights saved",
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / steps, 4),
        "final_loss": curve[-1][1],
        "loss_curve": curve,
        "sample_accuracy": round(accuracy, 4),
        "sample_accuracy_per_class": [round(a, 3) for a in per_class],
        "sample_accuracy_how": (
            f"{EVAL_PER_CLASS} samples per digit ({EVAL_STEPS} DDIM steps, guidance {EVAL_GUIDANCE}), downsampled to 8x8 "
            "and read by a logistic regression trained on the real digits"
        ),
        "hardware": hardware(choice),
        "threads": choice.threads,
        "torch": torch.__version__,
        "seed": SEED,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (tmp / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    loss_curve_png(curve, tmp / "loss_curve.png")
    digits_grid(samples[::EVAL_PER_CLASS // 2], columns=10).save(tmp / "samples.png")
    shutil.rmtree(OUT, ignore_errors=True)
    tmp.rename(OUT)
    print(json.dumps({k: v for k, v in record.items() if k != "loss_curve"}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    train(args.steps, args.batch_size, args.lr)


if __name__ == "__main__":
    main()
