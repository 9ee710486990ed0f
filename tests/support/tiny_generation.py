"""Tiny seeded image-generation models built from configs, like diffusers' ``get_dummy_components()``.

The text-to-image pipeline uses the classes of the real checkpoints (StableDiffusionPipeline with
UNet2DConditionModel, AutoencoderKL, CLIPTextModel, a CLIPTokenizer read from vocab.json + merges.txt
files written here, and a scheduler), scaled down. Nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "red", "fox", "in", "the", "snow", "photo", "of", "cat", "dog", "blue", "sky", "painting", "city"]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters (what ByteLevel pre-tokenizes into)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def write_clip_tokenizer_files(folder: Path) -> Path:
    """Write a tiny CLIP vocabulary (every byte, alone and word-final, plus a few whole words) and its merges.

    Returns:
        The folder, ready for ``CLIPTokenizer.from_pretrained``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    for word in WORDS:  # merge left to right: "r e" -> "re", "re d</w>" -> "red</w>"
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if f"{pieces[0]} {pieces[1]}" not in merges:
                merges.append(f"{pieces[0]} {pieces[1]}")
                tokens.append(merged)
            pieces = [merged] + pieces[2:]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def clip_tokenizer(folder: Path, max_length: int = 77):
    """A CLIPTokenizer loaded from tiny vocab/merges files written into ``folder``."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_clip_tokenizer_files(folder)), model_max_length=max_length)


def sd_components(folder: Path) -> dict:
    """The components of a StableDiffusionPipeline, tiny and seeded (diffusers' test recipe, with a VAE that
    downsamples 8 times like the real ones, so latents have the real models' shape)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=2,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1,
                              set_alpha_to_one=False)
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[4, 4, 8, 8], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, norm_num_groups=2,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
    ))
    return {"unet": unet.eval(), "scheduler": scheduler, "vae": vae.eval(), "text_encoder": text_encoder.eval(),
            "tokenizer": tokenizer, "safety_checker": None, "feature_extractor": None, "image_encoder": None}


def sd_pipeline(folder: Path):
    """A tiny StableDiffusionPipeline on CPU with its progress bar off."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**sd_components(folder), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def text_to_image(folder: Path, default_steps: int = 2, default_guidance: float = 0.0):
    """The tiny pipeline wrapped as core.imagegen.TextToImage (what the loader returns)."""
    from core.imagegen import TextToImage

    return TextToImage(sd_pipeline(folder), default_steps, default_guidance)


def tiny_decoder():
    """A tiny AutoencoderTiny (TAESD's class) decoding 4-channel latents, as core.imagegen.TinyDecoder."""
    from diffusers import AutoencoderTiny

    from core.imagegen import TinyDecoder

    torch.manual_seed(0)
    vae = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
    )
    return TinyDecoder(vae.eval())
