"""Tiny seeded image-text models built from configs: the same classes as the real checkpoints, scaled down.

* CLIP: an open_clip model config registered with ``open_clip.add_model_config`` (the same route as the
  built-in ``ViT-B-32.json``), built by ``open_clip.create_model_and_transforms``: class ``open_clip.CLIP``,
  open_clip's own image transform and its BPE tokenizer (bundled with open_clip, no download).
* BLIP: ``BlipForConditionalGeneration`` from a small ``BlipConfig``, with a ``BlipProcessor`` made of a
  ``BlipImageProcessor`` and a WordPiece tokenizer built in memory (plus BLIP's ``[DEC]`` start token).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from tests.support.tiny import wordpiece_tokenizer

TINY_CLIP = "ubt-tiny-clip"
CLIP_IMAGE_SIZE = 32
CLIP_EMBED_DIM = 16
BLIP_IMAGE_SIZE = 32

_CLIP_CONFIG = {
    "embed_dim": CLIP_EMBED_DIM,
    "vision_cfg": {"image_size": CLIP_IMAGE_SIZE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def register_tiny_clip_config() -> str:
    """Register the tiny open_clip architecture (once per process) and return its name."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="ubt-open-clip-"))
        (folder / f"{TINY_CLIP}.json").write_text(json.dumps(_CLIP_CONFIG))
        open_clip.add_model_config(folder)
    return TINY_CLIP


def clip_model():
    """A tiny random open_clip CLIP (2+2 layers, width 32, 32 px images) as a core.vision.ClipModel."""
    import open_clip

    from core.vision import ClipModel

    arch = register_tiny_clip_config()
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(arch)
    return ClipModel(model.eval(), preprocess, open_clip.get_tokenizer(arch))


def blip_captioner():
    """A tiny random BlipForConditionalGeneration (2+2 layers, width 32, 32 px images) as a Captioner."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    from core.vision import Captioner

    tokenizer = wordpiece_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    ids = dict(bos_token_id=tokenizer.bos_token_id, sep_token_id=tokenizer.sep_token_id,
               pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, **ids),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=BLIP_IMAGE_SIZE, patch_size=8),
        projection_dim=16, image_text_hidden_size=16,
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    processor = BlipProcessor(BlipImageProcessor(size={"height": BLIP_IMAGE_SIZE, "width": BLIP_IMAGE_SIZE}), tokenizer)
    return Captioner(processor, model)
